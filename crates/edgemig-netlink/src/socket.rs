//! [`NlSocket`]: a blocking netlink socket of any protocol that sends one
//! request at a time and reads its replies up to the ACK or `NLMSG_DONE`.

use std::io;

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkDeserializable, NetlinkHeader, NetlinkMessage,
    NetlinkPayload, NetlinkSerializable,
};
use netlink_sys::{Socket, SocketAddr};

use crate::error::NetlinkError;
use crate::extack::{NLMSG_HDRLEN, error_text, ext_ack_msg};

fn io_err(op: &'static str) -> impl FnOnce(io::Error) -> NetlinkError {
    move |source| NetlinkError::Io { op, source }
}

/// Blocking netlink socket bound in the network namespace of the thread
/// that opened it. One request at a time; replies to an earlier request
/// (e.g. the rest of a dump abandoned early) are skipped by sequence number.
#[derive(Debug)]
pub struct NlSocket {
    sock: Socket,
    seq: u32,
}

impl NlSocket {
    /// Opens a socket of netlink `protocol` (see [`crate::protocols`]),
    /// asks for extended ACKs with capped request echoes, and connects it
    /// to the kernel.
    pub fn open(protocol: isize) -> Result<Self, NetlinkError> {
        let mut sock = Socket::new(protocol).map_err(io_err("open"))?;
        sock.bind_auto().map_err(io_err("bind"))?;
        sock.set_ext_ack(true)
            .map_err(io_err("set NETLINK_EXT_ACK"))?;
        sock.set_cap_ack(true)
            .map_err(io_err("set NETLINK_CAP_ACK"))?;
        sock.connect(&SocketAddr::new(0, 0))
            .map_err(io_err("connect"))?;
        Ok(Self { sock, seq: 0 })
    }

    /// Sends `msg` with `NLM_F_REQUEST | flags` and returns the replies.
    ///
    /// `flags` must ask for an end marker: `NLM_F_ACK` (the replies before
    /// the ACK are returned, e.g. the answer to a `GET`) or `NLM_F_DUMP`
    /// (everything up to `NLMSG_DONE`). `op` names the request in errors.
    pub fn request<T>(
        &mut self,
        op: &'static str,
        msg: T,
        flags: u16,
    ) -> Result<Vec<T>, NetlinkError>
    where
        T: NetlinkSerializable + NetlinkDeserializable,
    {
        let mut replies = Vec::new();
        self.request_each(op, msg, flags, |m| -> Result<(), NetlinkError> {
            replies.push(m);
            Ok(())
        })?;
        Ok(replies)
    }

    /// Sends `msg` as a dump (`NLM_F_REQUEST | NLM_F_DUMP`) and calls `each`
    /// for every reply until `NLMSG_DONE`; see [`Self::request_each`].
    pub fn dump<T, E>(
        &mut self,
        op: &'static str,
        msg: T,
        each: impl FnMut(T) -> Result<(), E>,
    ) -> Result<(), E>
    where
        T: NetlinkSerializable + NetlinkDeserializable,
        E: From<NetlinkError>,
    {
        self.request_each(op, msg, NLM_F_DUMP, each)
    }

    /// Sends `msg` with `NLM_F_REQUEST | flags` (see [`Self::request`]) and
    /// calls `each` for every reply until the ACK or `NLMSG_DONE`.
    ///
    /// An error of `each` ends the exchange early and is returned as is;
    /// the replies still queued are dropped by the next request, whose
    /// sequence number differs.
    pub fn request_each<T, E>(
        &mut self,
        op: &'static str,
        msg: T,
        flags: u16,
        mut each: impl FnMut(T) -> Result<(), E>,
    ) -> Result<(), E>
    where
        T: NetlinkSerializable + NetlinkDeserializable,
        E: From<NetlinkError>,
    {
        self.send(msg, flags)?;
        loop {
            let (rx, _) = self.sock.recv_from_full().map_err(io_err("recv"))?;
            if rx.is_empty() {
                return Err(NetlinkError::Decode {
                    op,
                    detail: "empty datagram".into(),
                }
                .into());
            }
            let mut off = 0;
            while off < rx.len() {
                let reply = NetlinkMessage::<T>::deserialize(&rx[off..]).map_err(|e| {
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
                    NetlinkPayload::InnerMessage(m) => each(m)?,
                    NetlinkPayload::Error(e) => {
                        // No code: a plain ACK, nothing more to come.
                        let Some(code) = e.code else {
                            return Ok(());
                        };
                        return Err(NetlinkError::Kernel {
                            op,
                            errno: code.get().saturating_abs(),
                            message: error_text(flags, &e.header),
                        }
                        .into());
                    }
                    NetlinkPayload::Done(d) => {
                        // A dump that failed midway ends with its error code.
                        if d.code != 0 {
                            return Err(NetlinkError::Kernel {
                                op,
                                errno: d.code.saturating_abs(),
                                message: ext_ack_msg(&d.extended_ack),
                            }
                            .into());
                        }
                        return Ok(());
                    }
                    NetlinkPayload::Overrun(_) => {
                        return Err(NetlinkError::Decode {
                            op,
                            detail: "netlink overrun".into(),
                        }
                        .into());
                    }
                    _ => {}
                }
            }
        }
    }

    /// Sends `msg` as the next request, with a fresh sequence number.
    fn send<T>(&mut self, msg: T, flags: u16) -> Result<(), NetlinkError>
    where
        T: NetlinkSerializable,
    {
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        self.seq = self.seq.wrapping_add(1);
        header.sequence_number = self.seq;
        let mut nl = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        nl.finalize();
        let mut buf = vec![0u8; nl.buffer_len()];
        nl.serialize(&mut buf);
        self.sock.send(&buf, 0).map_err(io_err("send"))?;
        Ok(())
    }
}
