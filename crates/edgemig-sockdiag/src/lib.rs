//! The kernel's TCP sockets and MPTCP subflows as typed data, listed through
//! `NETLINK_SOCK_DIAG` (inet_diag) the way `ss -tiM` does, without running
//! `ss`.
//!
//! Everything is synchronous and blocking, pure Rust on top of libc, so it
//! serves the tokio host agent (from `spawn_blocking`) and the static guest
//! agent alike. A listing operates in the network namespace of the calling
//! thread; [`tcp_sockets_in`] lists the sockets of a named namespace
//! (`/run/netns/NAME`) from a fresh thread. Each [`TcpSocket`] carries its
//! `struct tcp_info` ([`TcpStats`]: RTT, bytes acked/received, …) and, for
//! an MPTCP subflow, the connection it belongs to ([`SubflowInfo`], whose
//! tokens need `CAP_NET_ADMIN`); [`group_mptcp`] assembles connections.
//!
//! ```no_run
//! use edgemig_sockdiag::{Query, group_mptcp, tcp_sockets};
//! # fn main() -> Result<(), edgemig_sockdiag::SockDiagError> {
//! // Bytes sent per local address to a peer's port 7000.
//! let q = Query::established().with_remote_port(7000);
//! for s in tcp_sockets(&q)? {
//!     if let Some(st) = s.stats {
//!         println!("{} -> {}: {} B acked, rtt {} us", s.local, s.remote,
//!             st.bytes_acked, st.rtt_us);
//!     }
//! }
//! // MPTCP connections and the local addresses their subflows use.
//! for conn in group_mptcp(&tcp_sockets(&Query::established())?) {
//!     println!("{:08x}: {:?}", conn.token, conn.local_ips());
//! }
//! # Ok(()) }
//! ```

mod diag;
mod mptcp;
mod query;
mod socket;
mod state;
mod subflow;
mod tcp;
mod tcp_info;

pub use diag::{SockDiag, SockDiagError, tcp_sockets, tcp_sockets_in};
pub use edgemig_netlink::NetlinkError;
pub use edgemig_netns::NetnsError;
pub use mptcp::{MptcpConnection, group_mptcp};
pub use query::{Family, Query};
pub use state::{StateSet, TcpState};
pub use subflow::{SubflowFlags, SubflowInfo, UlpError};
pub use tcp::{ResponseError, TcpSocket};
pub use tcp_info::{TcpInfoError, TcpStats};
