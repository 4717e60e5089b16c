//! VM definitions: names, persistent records, and what is derived from them
//! (MAC addresses, TAP names, guest addresses).

mod disks;
mod record;

pub use disks::{Boot, DiskRole, VmDisk};
pub use record::{VmRecord, allocate_address, is_valid_name, random_mac_seed};
