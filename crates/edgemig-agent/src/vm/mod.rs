//! VM definitions: names, persistent records, and what is derived from them
//! (MAC addresses, TAP names, guest addresses).

mod record;

pub use record::{VmRecord, allocate_address, is_valid_name, random_mac_seed};
