//! A blocking generic netlink socket: sends one request, collects the
//! replies up to the ACK (or `NLMSG_DONE` for dumps), turns `NLMSG_ERROR`
//! into [`NetlinkError::Kernel`] with the kernel's extended-ACK message, and
//! resolves family ids with `CTRL_CMD_GETFAMILY`.

use std::fmt::Debug;
use std::io;

use netlink_packet_core::{
    Emitable, NLM_F_ACK, NLM_F_ACK_TLVS, NLM_F_CAPPED, NLM_F_DUMP, NLM_F_REQUEST, NetlinkMessage,
    NetlinkPayload, NlasIterator, ParseableParametrized,
};
use netlink_packet_generic::{
    GenlFamily, GenlHeader, GenlMessage,
    ctrl::{GenlCtrl, GenlCtrlCmd, nlas::GenlCtrlAttrs},
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_GENERIC};

/// `NLMSGERR_ATTR_MSG`: extended-ACK attribute carrying a text message.
const NLMSGERR_ATTR_MSG: u16 = 1;
/// Size of `struct nlmsghdr`.
const NLMSG_HDRLEN: usize = 16;

/// Errors of the netlink transport.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("netlink socket {op}: {source}")]
    Io {
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("kernel rejected {op}: {}{}", io::Error::from_raw_os_error(*errno),
        message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Kernel {
        op: &'static str,
        /// Positive errno value.
        errno: i32,
        /// The kernel's extended-ACK message, when it sent one.
        message: Option<String>,
    },
    #[error("malformed netlink reply to {op}: {detail}")]
    Decode { op: &'static str, detail: String },
    #[error("generic netlink family {0:?} not found (kernel without MPTCP?)")]
    FamilyNotFound(&'static str),
}

impl NetlinkError {
    /// The errno of a kernel rejection, if this is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Self::Kernel { errno, .. } => Some(*errno),
            _ => None,
        }
    }

    /// The kernel's extended-ACK message, if it sent one.
    pub fn kernel_message(&self) -> Option<&str> {
        match self {
            Self::Kernel { message, .. } => message.as_deref(),
            _ => None,
        }
    }
}

fn io_err(op: &'static str) -> impl FnOnce(io::Error) -> NetlinkError {
    move |source| NetlinkError::Io { op, source }
}

/// Blocking `NETLINK_GENERIC` socket bound in the namespace of the thread
/// that opened it.
#[derive(Debug)]
pub(crate) struct GenlSocket {
    sock: Socket,
    seq: u32,
}

impl GenlSocket {
    pub fn open() -> Result<Self, NetlinkError> {
        let mut sock = Socket::new(NETLINK_GENERIC).map_err(io_err("open"))?;
        sock.bind_auto().map_err(io_err("bind"))?;
        sock.set_ext_ack(true)
            .map_err(io_err("set NETLINK_EXT_ACK"))?;
        sock.set_cap_ack(true)
            .map_err(io_err("set NETLINK_CAP_ACK"))?;
        sock.connect(&SocketAddr::new(0, 0))
            .map_err(io_err("connect"))?;
        Ok(Self { sock, seq: 0 })
    }

    /// Id of the generic netlink family `name`.
    pub fn resolve_family(&mut self, name: &'static str) -> Result<u16, NetlinkError> {
        let msg = GenlMessage::from_payload(GenlCtrl {
            cmd: GenlCtrlCmd::GetFamily,
            nlas: vec![GenlCtrlAttrs::FamilyName(name.to_owned())],
        });
        let replies = match self.request("CTRL_CMD_GETFAMILY", msg, false) {
            Err(NetlinkError::Kernel { errno, .. }) if errno == libc::ENOENT => {
                return Err(NetlinkError::FamilyNotFound(name));
            }
            other => other?,
        };
        replies
            .iter()
            .flat_map(|r| r.nlas.iter())
            .find_map(|nla| match nla {
                GenlCtrlAttrs::FamilyId(id) => Some(*id),
                _ => None,
            })
            .ok_or(NetlinkError::FamilyNotFound(name))
    }

    /// Sends `msg` and returns the payloads of the replies. A `dump` request
    /// ends with `NLMSG_DONE`, any other with the ACK.
    pub fn request<F>(
        &mut self,
        op: &'static str,
        mut msg: GenlMessage<F>,
        dump: bool,
    ) -> Result<Vec<F>, NetlinkError>
    where
        F: GenlFamily + Emitable + ParseableParametrized<[u8], GenlHeader> + Debug,
    {
        msg.finalize();
        let mut nl = NetlinkMessage::from(msg);
        nl.header.flags = NLM_F_REQUEST | if dump { NLM_F_DUMP } else { NLM_F_ACK };
        self.seq = self.seq.wrapping_add(1);
        nl.header.sequence_number = self.seq;
        nl.finalize();
        let mut buf = vec![0u8; nl.buffer_len()];
        nl.serialize(&mut buf);
        self.sock.send(&buf, 0).map_err(io_err("send"))?;

        let mut replies = Vec::new();
        loop {
            let (rx, _) = self.sock.recv_from_full().map_err(io_err("recv"))?;
            let mut off = 0;
            while off < rx.len() {
                let reply =
                    NetlinkMessage::<GenlMessage<F>>::deserialize(&rx[off..]).map_err(|e| {
                        NetlinkError::Decode {
                            op,
                            detail: e.to_string(),
                        }
                    })?;
                let len = reply.header.length as usize;
                off += len.max(NLMSG_HDRLEN).next_multiple_of(4);
                if reply.header.sequence_number != self.seq {
                    continue;
                }
                let flags = reply.header.flags;
                match reply.payload {
                    NetlinkPayload::InnerMessage(m) => replies.push(m.payload),
                    NetlinkPayload::Error(e) => {
                        let Some(code) = e.code else {
                            return Ok(replies);
                        };
                        return Err(NetlinkError::Kernel {
                            op,
                            errno: code.get().saturating_abs(),
                            message: error_text(flags, &e.header),
                        });
                    }
                    NetlinkPayload::Done(d) => {
                        if d.code != 0 {
                            return Err(NetlinkError::Kernel {
                                op,
                                errno: d.code.saturating_abs(),
                                message: ext_ack_msg(&d.extended_ack),
                            });
                        }
                        return Ok(replies);
                    }
                    NetlinkPayload::Overrun(_) => {
                        return Err(NetlinkError::Decode {
                            op,
                            detail: "netlink overrun".into(),
                        });
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
    use super::*;

    #[test]
    fn extended_ack_message_is_extracted() {
        // Capped echo of the request header, then NLMSGERR_ATTR_MSG.
        let mut rest = vec![0u8; NLMSG_HDRLEN];
        rest[0] = 40;
        let text = b"limit greater than maximum\0";
        let len = (4 + text.len()) as u16;
        rest.extend_from_slice(&len.to_ne_bytes());
        rest.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        rest.extend_from_slice(text);
        rest.resize(rest.len().next_multiple_of(4), 0);
        let flags = NLM_F_CAPPED | NLM_F_ACK_TLVS;
        assert_eq!(
            error_text(flags, &rest).as_deref(),
            Some("limit greater than maximum")
        );
        assert_eq!(error_text(NLM_F_CAPPED, &rest), None);
    }
}
