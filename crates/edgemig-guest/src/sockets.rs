//! Creating MPTCP (or plain TCP) stream sockets: listeners and outgoing
//! connections, falling back to TCP when the kernel refuses MPTCP.

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// Errors creating sockets.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// socket(2) failed.
    #[error("creating socket: {0}")]
    Create(io::Error),
    /// bind/listen failed.
    #[error("listening on {addr}: {source}")]
    Listen {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: io::Error,
    },
    /// connect failed.
    #[error("connecting to {addr}: {source}")]
    Connect {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: io::Error,
    },
}

/// Which protocol a socket ended up using.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// IPPROTO_MPTCP.
    Mptcp,
    /// IPPROTO_TCP.
    Tcp,
}

impl Proto {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Proto::Mptcp => "mptcp",
            Proto::Tcp => "tcp",
        }
    }
}

/// Whether an error from socket(2) means "no MPTCP in this kernel".
fn mptcp_unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EPROTONOSUPPORT | libc::EINVAL | libc::ENOPROTOOPT | libc::EAFNOSUPPORT)
    )
}

/// A stream socket for `addr`: MPTCP unless `tcp_only` or unsupported.
fn stream_socket(addr: &SocketAddr, tcp_only: bool) -> Result<(Socket, Proto), SocketError> {
    let domain = Domain::for_address(*addr);
    if !tcp_only {
        match Socket::new(domain, Type::STREAM, Some(Protocol::MPTCP)) {
            Ok(s) => return Ok((s, Proto::Mptcp)),
            Err(e) if mptcp_unsupported(&e) => {
                eprintln!("edgemig-guest: MPTCP refused by the kernel ({e}); using TCP");
            }
            Err(e) => return Err(SocketError::Create(e)),
        }
    }
    Socket::new(domain, Type::STREAM, Some(Protocol::TCP))
        .map(|s| (s, Proto::Tcp))
        .map_err(SocketError::Create)
}

/// Listens on `addr` (MPTCP unless `tcp_only`).
pub fn listen(addr: SocketAddr, tcp_only: bool) -> Result<(TcpListener, Proto), SocketError> {
    let (sock, proto) = stream_socket(&addr, tcp_only)?;
    let err = |source| SocketError::Listen { addr, source };
    sock.set_reuse_address(true).map_err(err)?;
    sock.bind(&SockAddr::from(addr)).map_err(err)?;
    sock.listen(128).map_err(err)?;
    Ok((sock.into(), proto))
}

/// Connects to `addr` within `timeout` (MPTCP unless `tcp_only`).
pub fn connect(
    addr: SocketAddr,
    tcp_only: bool,
    timeout: Duration,
) -> Result<(TcpStream, Proto), SocketError> {
    let (sock, proto) = stream_socket(&addr, tcp_only)?;
    sock.connect_timeout(&SockAddr::from(addr), timeout)
        .map_err(|source| SocketError::Connect { addr, source })?;
    // Small probes must not wait for Nagle; failure is harmless.
    let _ = sock.set_tcp_nodelay(true);
    Ok((sock.into(), proto))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn mptcp_loopback_roundtrip() {
        let (l, proto) = listen("127.0.0.1:0".parse().unwrap(), false).unwrap();
        eprintln!("listener proto: {proto:?}");
        let addr = l.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut b = [0u8; 3];
            s.read_exact(&mut b).unwrap();
            s.write_all(&b).unwrap();
        });
        let (mut c, _) = connect(addr, false, Duration::from_secs(2)).unwrap();
        c.write_all(b"abc").unwrap();
        let mut b = [0u8; 3];
        c.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"abc");
        t.join().unwrap();
    }

    #[test]
    fn connect_refused_is_error() {
        let (l, _) = listen("127.0.0.1:0".parse().unwrap(), true).unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        assert!(connect(addr, true, Duration::from_secs(1)).is_err());
    }
}
