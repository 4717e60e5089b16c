//! `NETLINK_SOCK_DIAG` over the shared [`NlSocket`]: inet_diag dump
//! requests whose `InetResponse` replies are handed to a callback.

use edgemig_netlink::{NetlinkError, NlSocket, protocols::NETLINK_SOCK_DIAG};
use netlink_packet_sock_diag::{SockDiagMessage, inet::InetRequest, inet::InetResponse};

/// Blocking `NETLINK_SOCK_DIAG` socket bound in the network namespace of the
/// thread that opened it.
#[derive(Debug)]
pub(crate) struct DiagSocket {
    sock: NlSocket,
}

impl DiagSocket {
    pub fn open() -> Result<Self, NetlinkError> {
        Ok(Self {
            sock: NlSocket::open(NETLINK_SOCK_DIAG)?,
        })
    }

    /// Sends `request` as a dump and calls `each` for every inet socket the
    /// kernel reports, until `NLMSG_DONE`. An error of `each` ends the dump
    /// early (the rest of the replies are dropped with the socket's next
    /// request, whose sequence number differs).
    pub fn dump<E>(
        &mut self,
        request: InetRequest,
        mut each: impl FnMut(InetResponse) -> Result<(), E>,
    ) -> Result<(), E>
    where
        E: From<NetlinkError>,
    {
        let msg = SockDiagMessage::InetRequest(request);
        self.sock.dump("the socket dump", msg, |reply| match reply {
            SockDiagMessage::InetResponse(r) => each(*r),
            _ => Ok(()),
        })
    }
}

#[cfg(test)]
mod tests {
    use netlink_packet_sock_diag::{
        AF_INET,
        inet::{ExtensionFlags, SocketId, StateFlags},
    };

    use super::*;

    /// A protocol without an inet_diag handler makes the real kernel answer
    /// with an error, which must come back typed.
    #[test]
    fn kernel_error_is_typed() {
        let mut sock = DiagSocket::open().expect("open");
        let request = InetRequest {
            family: AF_INET,
            protocol: 250,
            extensions: ExtensionFlags::empty(),
            states: StateFlags::all(),
            socket_id: SocketId::new_v4(),
        };
        let mut seen = 0;
        let err = sock
            .dump(request, |_| -> Result<(), NetlinkError> {
                seen += 1;
                Ok(())
            })
            .expect_err("protocol 250 has no sock_diag handler");
        assert_eq!(seen, 0);
        assert!(
            matches!(err, NetlinkError::Kernel { errno, .. } if errno == libc::ENOENT),
            "{err:?}"
        );
        // The socket stays usable after a rejected request.
        let ok = InetRequest {
            family: AF_INET,
            protocol: libc::IPPROTO_TCP as u8,
            extensions: ExtensionFlags::empty(),
            states: StateFlags::all(),
            socket_id: SocketId::new_v4(),
        };
        sock.dump(ok, |_| -> Result<(), NetlinkError> { Ok(()) })
            .expect("TCP dump after an error");
    }
}
