//! A blocking `NETLINK_SOCK_DIAG` socket: sends one dump request, collects
//! the `NLM_F_MULTI` replies up to `NLMSG_DONE`, and turns `NLMSG_ERROR`
//! (or a `NLMSG_DONE` carrying an error code) into
//! [`NetlinkError::Kernel`] with the kernel's extended-ACK message.

use std::io;

use netlink_packet_core::{
    NLM_F_ACK_TLVS, NLM_F_CAPPED, NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage,
    NetlinkPayload, NlasIterator,
};
use netlink_packet_sock_diag::{SockDiagMessage, inet::InetRequest, inet::InetResponse};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_SOCK_DIAG};

/// `NLMSGERR_ATTR_MSG`: extended-ACK attribute carrying a text message.
const NLMSGERR_ATTR_MSG: u16 = 1;
/// Size of `struct nlmsghdr`.
const NLMSG_HDRLEN: usize = 16;

/// Errors of the netlink transport.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// A socket system call failed.
    #[error("Netlink socket {op} failed")]
    Io {
        /// What was attempted.
        op: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The kernel answered the request with an error.
    #[error("Kernel rejected the socket dump: {}{}", io::Error::from_raw_os_error(*errno),
        message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Kernel {
        /// Positive errno value.
        errno: i32,
        /// The kernel's extended-ACK message, when it sent one.
        message: Option<String>,
    },
    /// A reply could not be decoded.
    #[error("Malformed sock_diag reply: {0}")]
    Decode(String),
}

impl NetlinkError {
    /// The errno of a kernel rejection, if this is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Self::Kernel { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

fn io_err(op: &'static str) -> impl FnOnce(io::Error) -> NetlinkError {
    move |source| NetlinkError::Io { op, source }
}

/// Blocking `NETLINK_SOCK_DIAG` socket bound in the network namespace of the
/// thread that opened it.
#[derive(Debug)]
pub(crate) struct DiagSocket {
    sock: Socket,
    seq: u32,
}

impl DiagSocket {
    pub fn open() -> Result<Self, NetlinkError> {
        let mut sock = Socket::new(NETLINK_SOCK_DIAG).map_err(io_err("open"))?;
        sock.bind_auto().map_err(io_err("bind"))?;
        sock.set_ext_ack(true)
            .map_err(io_err("set NETLINK_EXT_ACK"))?;
        sock.set_cap_ack(true)
            .map_err(io_err("set NETLINK_CAP_ACK"))?;
        sock.connect(&SocketAddr::new(0, 0))
            .map_err(io_err("connect"))?;
        Ok(Self { sock, seq: 0 })
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
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        self.seq = self.seq.wrapping_add(1);
        header.sequence_number = self.seq;
        let mut nl = NetlinkMessage::new(header, SockDiagMessage::InetRequest(request).into());
        nl.finalize();
        let mut buf = vec![0u8; nl.buffer_len()];
        nl.serialize(&mut buf);
        self.sock.send(&buf, 0).map_err(io_err("send"))?;

        loop {
            let (rx, _) = self.sock.recv_from_full().map_err(io_err("recv"))?;
            if rx.is_empty() {
                return Err(NetlinkError::Decode("empty datagram".into()).into());
            }
            let mut off = 0;
            while off < rx.len() {
                let reply = NetlinkMessage::<SockDiagMessage>::deserialize(&rx[off..])
                    .map_err(|e| NetlinkError::Decode(format!("{e:#}")))?;
                let len = reply.header.length as usize;
                off += len.max(NLMSG_HDRLEN).next_multiple_of(4);
                if reply.header.sequence_number != self.seq {
                    continue;
                }
                let flags = reply.header.flags;
                match reply.payload {
                    NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(r)) => each(*r)?,
                    NetlinkPayload::InnerMessage(_) | NetlinkPayload::Noop => {}
                    NetlinkPayload::Error(e) => {
                        let Some(code) = e.code else {
                            // A plain ACK: no error, nothing more to come.
                            return Ok(());
                        };
                        return Err(NetlinkError::Kernel {
                            errno: code.get().saturating_abs(),
                            message: error_text(flags, &e.header),
                        }
                        .into());
                    }
                    NetlinkPayload::Done(d) => {
                        if d.code != 0 {
                            return Err(NetlinkError::Kernel {
                                errno: d.code.saturating_abs(),
                                message: ext_ack_msg(&d.extended_ack),
                            }
                            .into());
                        }
                        return Ok(());
                    }
                    NetlinkPayload::Overrun(_) => {
                        return Err(NetlinkError::Decode("netlink overrun".into()).into());
                    }
                    _ => {}
                }
            }
        }
    }
}

/// The extended-ACK message of an `NLMSG_ERROR` whose payload after the
/// error code is `rest` (echoed request header, then TLVs).
fn error_text(flags: u16, rest: &[u8]) -> Option<String> {
    if flags & NLM_F_ACK_TLVS == 0 || rest.len() < NLMSG_HDRLEN {
        return None;
    }
    let skip = if flags & NLM_F_CAPPED != 0 {
        NLMSG_HDRLEN
    } else {
        let orig = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        orig.next_multiple_of(4)
    };
    ext_ack_msg(rest.get(skip..)?)
}

fn ext_ack_msg(tlvs: &[u8]) -> Option<String> {
    NlasIterator::new(tlvs)
        .map_while(Result::ok)
        .find(|nla| nla.kind() == NLMSGERR_ATTR_MSG)
        .map(|nla| {
            let v = nla.value();
            let end = v.iter().position(|b| *b == 0).unwrap_or(v.len());
            String::from_utf8_lossy(&v[..end]).into_owned()
        })
}

#[cfg(test)]
mod tests {
    use netlink_packet_sock_diag::{
        AF_INET,
        inet::{ExtensionFlags, SocketId, StateFlags},
    };

    use super::*;

    #[test]
    fn extended_ack_message_is_extracted() {
        let mut rest = vec![0u8; NLMSG_HDRLEN];
        rest[0] = 40;
        let text = b"no handler\0";
        let len = (4 + text.len()) as u16;
        rest.extend_from_slice(&len.to_ne_bytes());
        rest.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        rest.extend_from_slice(text);
        rest.resize(rest.len().next_multiple_of(4), 0);
        let flags = NLM_F_CAPPED | NLM_F_ACK_TLVS;
        assert_eq!(error_text(flags, &rest).as_deref(), Some("no handler"));
        assert_eq!(error_text(NLM_F_CAPPED, &rest), None);
    }

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
