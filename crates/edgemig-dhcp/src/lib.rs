//! DHCPv4 server (RFC 2131/2132) of an edge site's VM network, with static
//! leases only: the host agent keeps a [`LeaseTable`] (MAC → address) up to
//! date and the server answers each VM with the address the agent assigned.
//!
//! ```no_run
//! # async fn example() -> Result<(), edgemig_dhcp::SocketError> {
//! use edgemig_dhcp::{DhcpServer, Lease, LeaseTable, MacAddr, ServerConfig};
//! let gateway = "10.10.0.1".parse().unwrap();
//! let leases = LeaseTable::new();
//! let mac: MacAddr = "52:54:00:12:34:56".parse().unwrap();
//! leases.insert(mac, Lease::new("10.10.0.2".parse().unwrap(), 24, gateway).unwrap());
//! let server = DhcpServer::start("embr0", ServerConfig::new(gateway), leases.clone())?;
//! // ... the agent changes `leases` as VMs come and go ...
//! server.stop().await;
//! # Ok(()) }
//! ```
//!
//! The layers, each usable alone: [`request::parse`] (bytes to a
//! [`Request`]), [`decide::decide`] (pure RFC 2131 logic), [`reply::encode`],
//! [`handler::handle`] (all three for one packet), [`run`] (the loop over a
//! socket from [`bind_socket`], until a shutdown future resolves) and
//! [`DhcpServer`] (that loop as a task with a stop handle). See
//! `docs/dhcp.md`.

pub mod decide;
pub mod handler;
mod lease;
mod logs;
mod mac;
mod ratelimit;
pub mod reply;
pub mod request;
mod server;
mod socket;
mod stats;
mod table;

#[cfg(test)]
mod test_packets;

pub use decide::{Decision, Destination, Ignored, NakReason, Noted, Reply};
pub use handler::{CLIENT_PORT, Handled, Outgoing};
pub use lease::{Lease, LeaseError, LeaseTime};
pub use mac::{MacAddr, MacParseError};
pub use request::{ParseError, Request, RequestKind};
pub use server::{DhcpServer, MAX_PACKET, ServerConfig, run};
pub use socket::{SERVER_PORT, SocketError, bind_socket};
pub use stats::{Event, Stats, StatsSnapshot};
pub use table::LeaseTable;
