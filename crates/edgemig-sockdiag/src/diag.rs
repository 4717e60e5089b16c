//! Listing TCP sockets: a reusable [`SockDiag`] handle in the caller's
//! network namespace, and one-shot helpers for the caller's or a named
//! namespace.

use edgemig_netlink::NetlinkError;
use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, SocketId, StateFlags};

use crate::query::Query;
use crate::socket::DiagSocket;
use crate::tcp::{ResponseError, TcpSocket};

/// Errors of listing sockets.
#[derive(Debug, thiserror::Error)]
pub enum SockDiagError {
    /// The netlink exchange with the kernel failed.
    #[error("Cannot list TCP sockets")]
    Netlink(#[from] NetlinkError),
    /// A socket the kernel reported could not be decoded.
    #[error("Cannot decode a listed TCP socket")]
    Response(#[from] ResponseError),
    /// The named network namespace could not be entered.
    #[error("Cannot list TCP sockets in another network namespace")]
    Netns(#[from] edgemig_netns::NetnsError),
}

/// An open `NETLINK_SOCK_DIAG` socket, bound to the network namespace of
/// the thread that opened it; reuse it to poll the same namespace often.
#[derive(Debug)]
pub struct SockDiag {
    sock: DiagSocket,
}

impl SockDiag {
    /// Opens the netlink socket in the calling thread's network namespace.
    pub fn open() -> Result<Self, SockDiagError> {
        Ok(Self {
            sock: DiagSocket::open()?,
        })
    }

    /// The TCP sockets (MPTCP subflows included) that match `q`, with their
    /// `tcp_info` and subflow information, IPv4 before IPv6, each family in
    /// the kernel's order. The dump is not atomic: sockets may come and go
    /// while it runs.
    pub fn tcp_sockets(&mut self, q: &Query) -> Result<Vec<TcpSocket>, SockDiagError> {
        let mut out = Vec::new();
        for &family in q.family.address_families() {
            let request = InetRequest {
                family,
                protocol: libc::IPPROTO_TCP as u8,
                // INFO brings tcp_info and, through the handler's aux
                // attributes, the ULP info of MPTCP subflows.
                extensions: ExtensionFlags::INFO,
                states: StateFlags::from_bits_retain(q.states.bits()),
                socket_id: if family == libc::AF_INET as u8 {
                    SocketId::new_v4()
                } else {
                    SocketId::new_v6()
                },
            };
            self.sock.dump(request, |r| -> Result<(), SockDiagError> {
                let s = TcpSocket::from_response(&r)?;
                if q.ports_match(&s.local, &s.remote) {
                    out.push(s);
                }
                Ok(())
            })?;
        }
        Ok(out)
    }
}

/// The TCP sockets matching `q` in the calling thread's network namespace
/// (see [`SockDiag::tcp_sockets`]).
pub fn tcp_sockets(q: &Query) -> Result<Vec<TcpSocket>, SockDiagError> {
    SockDiag::open()?.tcp_sockets(q)
}

/// The TCP sockets matching `q` in the named network namespace
/// (`/run/netns/NAME`), listed from a fresh thread that joins it; the
/// calling thread never changes namespace.
pub fn tcp_sockets_in(netns: &str, q: &Query) -> Result<Vec<TcpSocket>, SockDiagError> {
    edgemig_netns::in_netns(netns, || tcp_sockets(q))?
}
