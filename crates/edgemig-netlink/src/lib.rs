//! A small synchronous netlink client shared by edgemig's generic netlink
//! (`edgemig-mptcp`), sock_diag (`edgemig-sockdiag`) and rtnetlink (guest
//! agent) code.
//!
//! [`NlSocket`] is a blocking socket of any netlink protocol, bound in the
//! network namespace of the thread that opened it, with extended ACKs
//! enabled. It sends one request at a time, generic over the payload type
//! (anything implementing `netlink-packet-core`'s `NetlinkSerializable` and
//! `NetlinkDeserializable`), skips replies to earlier requests, and ends at
//! the ACK or at `NLMSG_DONE`. A kernel rejection comes back as
//! [`NetlinkError::Kernel`] with its errno and the kernel's extended-ACK
//! text message. Pure Rust on top of libc, so it links statically.
//!
//! ```no_run
//! use edgemig_netlink::{NlSocket, protocols::NETLINK_ROUTE};
//! use netlink_packet_core::NLM_F_DUMP;
//! use netlink_packet_route::{RouteNetlinkMessage, link::LinkMessage};
//! # fn main() -> Result<(), edgemig_netlink::NetlinkError> {
//! let mut sock = NlSocket::open(NETLINK_ROUTE)?;
//! let links = sock.request(
//!     "get links",
//!     RouteNetlinkMessage::GetLink(LinkMessage::default()),
//!     NLM_F_DUMP,
//! )?;
//! println!("{} links", links.len());
//! # Ok(()) }
//! ```

mod error;
mod extack;
mod socket;

pub use error::NetlinkError;
pub use netlink_sys::protocols;
pub use socket::NlSocket;
