//! A blocking `NETLINK_ROUTE` socket for the calling thread's network
//! namespace: one request at a time, replies collected up to the ACK (or
//! `NLMSG_DONE` for dumps), kernel rejections turned into
//! [`RtnlError::Kernel`] with their errno.

use std::io;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

/// Size of `struct nlmsghdr`.
const NLMSG_HDRLEN: usize = 16;

/// Errors of rtnetlink requests.
#[derive(Debug, thiserror::Error)]
pub enum RtnlError {
    /// The socket failed.
    #[error("rtnetlink socket {op}: {source}")]
    Io {
        /// What was attempted.
        op: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The kernel refused a request.
    #[error("kernel rejected {op}: {}", io::Error::from_raw_os_error(*errno))]
    Kernel {
        /// What was attempted.
        op: &'static str,
        /// Positive errno value.
        errno: i32,
    },
    /// A reply could not be decoded.
    #[error("malformed rtnetlink reply to {op}: {detail}")]
    Decode {
        /// What was attempted.
        op: &'static str,
        /// Decoder message.
        detail: String,
    },
}

impl RtnlError {
    /// The errno of a kernel rejection, if this is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Self::Kernel { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

/// Treats the kernel errors in `ok` as success (e.g. `EEXIST` on add,
/// `ENOENT`/`ESRCH` on delete).
pub fn tolerate(r: Result<(), RtnlError>, ok: &[i32]) -> Result<(), RtnlError> {
    match r {
        Err(e) if e.errno().is_some_and(|n| ok.contains(&n)) => Ok(()),
        other => other,
    }
}

fn io_err(op: &'static str) -> impl FnOnce(io::Error) -> RtnlError {
    move |source| RtnlError::Io { op, source }
}

/// Blocking rtnetlink socket bound in the namespace of the opening thread.
#[derive(Debug)]
pub struct Rtnl {
    sock: Socket,
    seq: u32,
}

impl Rtnl {
    /// Opens and connects the socket.
    pub fn open() -> Result<Self, RtnlError> {
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(io_err("open"))?;
        sock.bind_auto().map_err(io_err("bind"))?;
        sock.connect(&SocketAddr::new(0, 0))
            .map_err(io_err("connect"))?;
        Ok(Self { sock, seq: 0 })
    }

    /// Sends a dump request and returns every reply message.
    pub fn dump(
        &mut self,
        op: &'static str,
        msg: RouteNetlinkMessage,
    ) -> Result<Vec<RouteNetlinkMessage>, RtnlError> {
        self.request(op, msg, NLM_F_DUMP)
    }

    /// Sends a change request with `flags` (plus `NLM_F_ACK`) and waits for
    /// the ACK; returns any replies before it (`RTM_GETLINK` answers so).
    pub fn call(
        &mut self,
        op: &'static str,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, RtnlError> {
        self.request(op, msg, flags | NLM_F_ACK)
    }

    fn request(
        &mut self,
        op: &'static str,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, RtnlError> {
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        self.seq = self.seq.wrapping_add(1);
        header.sequence_number = self.seq;
        let mut nl = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        nl.finalize();
        let mut buf = vec![0u8; nl.buffer_len()];
        nl.serialize(&mut buf);
        self.sock.send(&buf, 0).map_err(io_err("send"))?;

        let mut replies = Vec::new();
        loop {
            let (rx, _) = self.sock.recv_from_full().map_err(io_err("recv"))?;
            let mut off = 0;
            while off < rx.len() {
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rx[off..])
                    .map_err(|e| RtnlError::Decode {
                        op,
                        detail: e.to_string(),
                    })?;
                let len = reply.header.length as usize;
                off += len.max(NLMSG_HDRLEN).next_multiple_of(4);
                if reply.header.sequence_number != self.seq {
                    continue;
                }
                match reply.payload {
                    NetlinkPayload::InnerMessage(m) => replies.push(m),
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(replies),
                            Some(code) => Err(RtnlError::Kernel {
                                op,
                                errno: code.get().saturating_abs(),
                            }),
                        };
                    }
                    NetlinkPayload::Done(d) => {
                        if d.code != 0 {
                            return Err(RtnlError::Kernel {
                                op,
                                errno: d.code.saturating_abs(),
                            });
                        }
                        return Ok(replies);
                    }
                    NetlinkPayload::Overrun(_) => {
                        return Err(RtnlError::Decode {
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
