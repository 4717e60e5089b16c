//! `sd_notify(READY=1)`: tells systemd the agent is up when the unit is
//! `Type=notify` (systemd then sets `NOTIFY_SOCKET`); nothing otherwise.

use std::os::unix::net::UnixDatagram;

/// Errors notifying systemd (logged).
#[derive(Debug, thiserror::Error)]
#[error("Cannot notify systemd on {socket}")]
pub struct NotifyError {
    /// The socket path.
    pub socket: String,
    /// Cause.
    #[source]
    pub source: std::io::Error,
}

/// Sends `READY=1` to `$NOTIFY_SOCKET`, if set. `Ok(false)` when unset.
pub fn ready() -> Result<bool, NotifyError> {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    let socket = socket.to_string_lossy().into_owned();
    send(&socket, "READY=1\n").map(|()| true)
}

fn send(socket: &str, msg: &str) -> Result<(), NotifyError> {
    let err = |source| NotifyError {
        socket: socket.to_string(),
        source,
    };
    let sock = UnixDatagram::unbound().map_err(err)?;
    if let Some(abstract_name) = socket.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes())
            .map_err(err)?;
        sock.send_to_addr(msg.as_bytes(), &addr).map_err(err)?;
    } else {
        sock.send_to(msg.as_bytes(), socket).map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_ready_to_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        send(path.to_str().unwrap(), "READY=1\n").unwrap();
        let mut buf = [0u8; 64];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\n");
        assert!(send("/nonexistent/socket", "READY=1\n").is_err());
    }
}
