//! MPTCP host setup through generic netlink (the kernel's `mptcp_pm`
//! family), without shelling out to `ip mptcp`.
//!
//! Everything here is synchronous and blocking, so the crate serves both the
//! tokio host agent (call it from `spawn_blocking`) and the std-threads guest
//! agent. [`MptcpPm`] operates in the network namespace of the thread that
//! opened it; [`in_netns`] runs a closure on a fresh thread inside a named
//! namespace (`/run/netns/NAME`) without ever switching the caller's thread.
//!
//! ```no_run
//! use edgemig_mptcp::{EndpointFlags, Limits, MptcpPm, NewEndpoint};
//! # fn main() -> Result<(), edgemig_mptcp::PmError> {
//! let mut pm = MptcpPm::open()?;
//! pm.set_limits(Limits { subflows: 4, add_addr_accepted: 4 })?;
//! let id = pm.add_endpoint(&NewEndpoint::new(
//!     "10.0.0.1".parse().unwrap(),
//!     EndpointFlags::SIGNAL,
//! ))?;
//! pm.delete_endpoint(id, None)?;
//! # Ok(()) }
//! ```

mod attrs;
mod pm;
mod socket;
mod types;

pub use attrs::WireError;
pub use edgemig_netlink::NetlinkError;
pub use edgemig_netns::{NetnsError, in_netns};
pub use pm::{MptcpPm, PmError};
pub use types::{Endpoint, EndpointFlags, Limits, NewEndpoint};
