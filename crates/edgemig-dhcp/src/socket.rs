//! The server's UDP socket: port 67 on every address, but bound to the VM
//! bridge (`SO_BINDTODEVICE`) so it hears and answers only that network,
//! with `SO_BROADCAST` for replies to clients without an address and
//! `SO_REUSEADDR` so several servers (one per bridge) share the port. It
//! lives in the network namespace of the thread that creates it: the
//! agent, already in the site's namespace, needs no `setns`.

use std::net::{Ipv4Addr, SocketAddrV4};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

/// Port servers listen on.
pub const SERVER_PORT: u16 = 67;

/// Errors of socket set-up.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// The name cannot name a network device.
    #[error("Invalid network device name {0:?}")]
    InvalidDevice(String),
    /// Called outside a tokio runtime.
    #[error("The DHCP server needs a tokio runtime")]
    NoRuntime(#[source] tokio::runtime::TryCurrentError),
    /// A socket call failed.
    #[error("Cannot {what} for the DHCP server on {device}")]
    Sys {
        /// What was attempted.
        what: &'static str,
        /// The bridge.
        device: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Binds UDP port 67 on `device` (the VM bridge, which must exist), as a
/// tokio socket: call it inside a tokio runtime.
pub fn bind_socket(device: &str) -> Result<UdpSocket, SocketError> {
    // IFNAMSIZ is 16 with the NUL.
    if device.is_empty() || device.len() > 15 || device.contains(['\0', '/']) {
        return Err(SocketError::InvalidDevice(device.to_string()));
    }
    tokio::runtime::Handle::try_current().map_err(SocketError::NoRuntime)?;
    let err = |what| {
        move |source| SocketError::Sys {
            what,
            device: device.to_string(),
            source,
        }
    };
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
        .map_err(err("open a UDP socket"))?;
    socket
        .set_reuse_address(true)
        .map_err(err("set SO_REUSEADDR"))?;
    socket
        .set_broadcast(true)
        .map_err(err("set SO_BROADCAST"))?;
    socket
        .bind_device(Some(device.as_bytes()))
        .map_err(err("bind the socket to the device"))?;
    socket
        .bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, SERVER_PORT).into())
        .map_err(err("bind UDP port 67"))?;
    socket
        .set_nonblocking(true)
        .map_err(err("make the socket non-blocking"))?;
    UdpSocket::from_std(socket.into()).map_err(err("register the socket with tokio"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_names_and_no_runtime_are_errors() {
        for bad in ["", "a/b", "x\0", "sixteen-chars-xx"] {
            assert!(
                matches!(bind_socket(bad), Err(SocketError::InvalidDevice(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            bind_socket("embr0"),
            Err(SocketError::NoRuntime(_))
        ));
    }
}
