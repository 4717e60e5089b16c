//! MPTCP sockets for the agent-to-agent control connection.
//!
//! Sockets are created as MPTCP (`IPPROTO_MPTCP`) so that losing one path
//! between sites loses neither control nor data; if the kernel refuses
//! MPTCP they fall back to plain TCP. Peers that do not speak MPTCP are
//! served as plain TCP by the kernel either way.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;

use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// Listen backlog of [`mptcp_listener`].
const BACKLOG: i32 = 1024;

/// A stream socket for `addr`'s family: MPTCP when the kernel allows it.
fn stream_socket(addr: &SocketAddr) -> io::Result<Socket> {
    let domain = Domain::for_address(*addr);
    let socket = match Socket::new(domain, Type::STREAM, Some(Protocol::MPTCP)) {
        Ok(socket) => socket,
        Err(err) => {
            tracing::debug!(error = %err, "MPTCP socket refused, falling back to TCP");
            Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?
        }
    };
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// A tokio listener on `addr`, MPTCP when available.
pub fn mptcp_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = stream_socket(&addr)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    TcpListener::from_std(socket.into())
}

/// Connects to `addr` over MPTCP when available.
pub async fn mptcp_connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let socket = stream_socket(&addr)?;
    let stream = TcpSocket::from_std_stream(socket.into())
        .connect(addr)
        .await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Whether a socket is an MPTCP socket (it may still run as plain TCP if
/// the peer does not speak MPTCP).
pub fn is_mptcp(socket: &impl AsFd) -> bool {
    matches!(SockRef::from(socket).protocol(), Ok(Some(p)) if p == Protocol::MPTCP)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn listener_and_connect_talk() {
        let listener = mptcp_listener("127.0.0.1:0".parse().expect("addr")).expect("listen");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.expect("accept");
            conn.write_all(b"hi").await.expect("write");
        });
        let mut client = mptcp_connect(addr).await.expect("connect");
        let mut buf = [0u8; 2];
        client.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"hi");
        server.await.expect("server task");
        let mptcp_enabled = std::fs::read_to_string("/proc/sys/net/mptcp/enabled")
            .map(|s| s.trim() == "1")
            .unwrap_or(false);
        if mptcp_enabled {
            assert!(is_mptcp(&client), "kernel has MPTCP but socket is TCP");
        }
    }
}
