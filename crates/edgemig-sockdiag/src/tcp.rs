//! One TCP socket as the kernel reports it in an inet_diag dump, decoded
//! into addresses, state, statistics and MPTCP subflow information.

use std::net::{IpAddr, SocketAddr, SocketAddrV6};

use netlink_packet_core::Nla as _;
use netlink_packet_sock_diag::inet::{InetResponse, nlas::Nla};

use crate::state::TcpState;
use crate::subflow::{SubflowInfo, UlpError, parse_ulp_info};
use crate::tcp_info::{TcpInfoError, TcpStats};

/// `INET_DIAG_ULP_INFO` (not decoded by `netlink-packet-sock-diag`).
const INET_DIAG_ULP_INFO: u16 = 19;

/// An attribute of a reported socket could not be decoded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ResponseError {
    /// `INET_DIAG_INFO` is malformed.
    #[error("Malformed TCP info of socket {local} -> {remote}")]
    TcpInfo {
        local: SocketAddr,
        remote: SocketAddr,
        #[source]
        source: TcpInfoError,
    },
    /// `INET_DIAG_ULP_INFO` is malformed.
    #[error("Malformed ULP info of socket {local} -> {remote}")]
    Ulp {
        local: SocketAddr,
        remote: SocketAddr,
        #[source]
        source: UlpError,
    },
}

/// A TCP socket (for an MPTCP connection: one of its subflows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpSocket {
    /// Local address and port. An IPv4-mapped IPv6 address
    /// (`::ffff:a.b.c.d`, a dual-stack socket) is reported as IPv4.
    pub local: SocketAddr,
    /// Remote address and port (unspecified for a listening socket),
    /// IPv4-mapped addresses reported as IPv4 too.
    pub remote: SocketAddr,
    /// Connection state.
    pub state: TcpState,
    /// Inode of the socket file (0 for sockets without one: time-wait,
    /// request sockets, and MPTCP subflows, whose file is the MPTCP
    /// socket's).
    pub inode: u32,
    /// Owner's uid.
    pub uid: u32,
    /// Interface the socket is bound to (`SO_BINDTODEVICE`), 0 if none.
    pub interface: u32,
    /// The kernel's socket cookie, unique while the socket lives.
    pub cookie: u64,
    /// Bytes in the receive queue (a listener: pending connections).
    pub recv_queue: u32,
    /// Bytes in the send queue (a listener: its backlog).
    pub send_queue: u32,
    /// `struct tcp_info`; `None` for time-wait and request sockets, which
    /// have none.
    pub stats: Option<TcpStats>,
    /// MPTCP subflow information; `None` for a plain TCP socket.
    pub mptcp: Option<SubflowInfo>,
}

impl TcpSocket {
    /// Whether this socket is a subflow of an MPTCP connection (or of an
    /// MPTCP listener).
    pub fn is_mptcp(&self) -> bool {
        self.mptcp.is_some()
    }

    /// Decodes one dump reply.
    pub(crate) fn from_response(r: &InetResponse) -> Result<Self, ResponseError> {
        let id = &r.header.socket_id;
        let local = socket_addr(id.source_address, id.source_port, id.interface_id);
        let remote = socket_addr(id.destination_address, id.destination_port, id.interface_id);
        let mut stats = None;
        let mut mptcp = None;
        for nla in &r.nlas {
            match nla {
                Nla::TcpInfo(bytes) => {
                    stats =
                        Some(
                            TcpStats::parse(bytes).map_err(|source| ResponseError::TcpInfo {
                                local,
                                remote,
                                source,
                            })?,
                        );
                }
                Nla::Other(attr)
                    if attr.kind() & netlink_packet_core::NLA_TYPE_MASK == INET_DIAG_ULP_INFO =>
                {
                    let mut value = vec![0u8; attr.value_len()];
                    attr.emit_value(&mut value);
                    mptcp = parse_ulp_info(&value).map_err(|source| ResponseError::Ulp {
                        local,
                        remote,
                        source,
                    })?;
                }
                _ => {}
            }
        }
        Ok(Self {
            local,
            remote,
            state: TcpState::from_raw(r.header.state),
            inode: r.header.inode,
            uid: r.header.uid,
            interface: id.interface_id,
            cookie: cookie(id.cookie),
            recv_queue: r.header.recv_queue,
            send_queue: r.header.send_queue,
            stats,
            mptcp,
        })
    }
}

/// The kernel's `__u32 idiag_cookie[2]`, low word first.
fn cookie(b: [u8; 8]) -> u64 {
    let lo = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
    let hi = u32::from_ne_bytes([b[4], b[5], b[6], b[7]]);
    u64::from(hi) << 32 | u64::from(lo)
}

/// The socket address of `ip:port`; IPv4-mapped addresses become IPv4, and
/// a link-local IPv6 address carries `ifindex` as its scope.
fn socket_addr(ip: IpAddr, port: u16, ifindex: u32) -> SocketAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) if v6.is_unicast_link_local() => {
            SocketAddr::V6(SocketAddrV6::new(v6, port, 0, ifindex))
        }
        other => SocketAddr::new(other, port),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_canonical() {
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(socket_addr(mapped, 80, 0), "10.1.2.3:80".parse().unwrap());
        let ll: IpAddr = "fe80::1".parse().unwrap();
        assert_eq!(socket_addr(ll, 80, 3), "[fe80::1%3]:80".parse().unwrap());
        let global: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(
            socket_addr(global, 80, 3),
            "[2001:db8::1]:80".parse().unwrap()
        );
    }
}
