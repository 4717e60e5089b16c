//! The echo/bulk service: a thread-per-connection server on an MPTCP socket.
//! The client's first byte picks the mode: `E` echo, `B` bulk download
//! (server sends until the client closes), `U` upload sink (server reads and
//! discards until EOF).

use crate::sockets::{self, Proto, SocketError};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// Mode byte: echo.
pub const MODE_ECHO: u8 = b'E';
/// Mode byte: bulk download.
pub const MODE_BULK: u8 = b'B';
/// Mode byte: upload sink.
pub const MODE_UPLOAD: u8 = b'U';

/// Size of the buffers sent or read per call.
const BUF: usize = 64 * 1024;

/// Errors of the service.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The listening socket could not be created.
    #[error(transparent)]
    Socket(#[from] SocketError),
    /// Reading the local address failed.
    #[error("local address: {0}")]
    LocalAddr(io::Error),
    /// A connection failed mid-way.
    #[error("connection: {0}")]
    Io(#[from] io::Error),
    /// The client sent an unknown mode byte.
    #[error("unknown mode byte {0:#04x}")]
    BadMode(u8),
}

/// A bound service, ready to [`Server::run`].
pub struct Server {
    listener: TcpListener,
    proto: Proto,
}

impl Server {
    /// Binds `addr` (MPTCP unless `tcp_only`, or when the kernel refuses).
    pub fn bind(addr: SocketAddr, tcp_only: bool) -> Result<Self, ServiceError> {
        let (listener, proto) = sockets::listen(addr, tcp_only)?;
        Ok(Self { listener, proto })
    }

    /// Address actually bound (port 0 resolved).
    pub fn local_addr(&self) -> Result<SocketAddr, ServiceError> {
        self.listener.local_addr().map_err(ServiceError::LocalAddr)
    }

    /// Protocol of the listening socket.
    pub fn proto(&self) -> Proto {
        self.proto
    }

    /// Accepts connections forever, one thread each.
    pub fn run(self) {
        loop {
            match self.listener.accept() {
                Ok((stream, peer)) => {
                    let spawned =
                        std::thread::Builder::new()
                            .name("svc-conn".into())
                            .spawn(move || {
                                if let Err(e) = handle(stream) {
                                    eprintln!("edgemig-guest: service connection {peer}: {e}");
                                }
                            });
                    if let Err(e) = spawned {
                        eprintln!("edgemig-guest: cannot spawn connection thread: {e}");
                    }
                }
                Err(e) => {
                    eprintln!("edgemig-guest: accept: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }
}

/// Serves one connection according to its mode byte.
pub fn handle(mut stream: TcpStream) -> Result<(), ServiceError> {
    let _ = stream.set_nodelay(true);
    let mut mode = [0u8; 1];
    if stream.read(&mut mode)? == 0 {
        return Ok(());
    }
    match mode[0] {
        MODE_ECHO => echo(&mut stream),
        MODE_BULK => bulk(&mut stream),
        MODE_UPLOAD => sink(&mut stream),
        other => Err(ServiceError::BadMode(other)),
    }
}

fn echo(stream: &mut TcpStream) -> Result<(), ServiceError> {
    let mut buf = vec![0u8; BUF];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&buf[..n])?;
    }
}

fn bulk(stream: &mut TcpStream) -> Result<(), ServiceError> {
    // The client closes its end once it measured enough. A writer blocked
    // on a full buffer would not notice (and, over MPTCP, the connection
    // would linger for a minute): watch for the close and end the stream.
    if let Ok(mut watch) = stream.try_clone() {
        std::thread::spawn(move || {
            let mut b = [0u8; 64];
            while matches!(watch.read(&mut b), Ok(n) if n > 0) {}
            let _ = watch.shutdown(std::net::Shutdown::Both);
        });
    }
    let buf = vec![0u8; BUF];
    loop {
        match stream.write(&buf) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            // The client closing is the normal end of a download.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::BrokenPipe
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::NotConnected
                ) =>
            {
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn sink(stream: &mut TcpStream) -> Result<(), ServiceError> {
    let mut buf = vec![0u8; BUF];
    loop {
        if stream.read(&mut buf)? == 0 {
            return Ok(());
        }
    }
}

/// Binds and runs the service in a background thread; returns the bound
/// address.
pub fn spawn(addr: SocketAddr, tcp_only: bool) -> Result<SocketAddr, ServiceError> {
    let server = Server::bind(addr, tcp_only)?;
    let local = server.local_addr()?;
    eprintln!(
        "edgemig-guest: service listening on {local} ({})",
        server.proto().name()
    );
    std::thread::Builder::new()
        .name("service".into())
        .spawn(move || server.run())?;
    Ok(local)
}
