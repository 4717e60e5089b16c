//! [`MptcpPm`]: the in-kernel MPTCP path manager of the calling thread's
//! network namespace — limits and endpoints, like `ip mptcp` but over
//! generic netlink.

use std::net::IpAddr;

use edgemig_netlink::NetlinkError;
use netlink_packet_core::DefaultNla;
use netlink_packet_generic::GenlMessage;

use crate::attrs::{
    AddrSpec, FAMILY_NAME, PmMessage, WireError, cmd, decode_endpoint, decode_limits, limits_nlas,
};
use crate::socket::GenlSocket;
use crate::types::{Endpoint, EndpointFlags, Limits, NewEndpoint};

/// Errors of path-manager operations.
#[derive(Debug, thiserror::Error)]
pub enum PmError {
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error("mptcp_pm reply: {0}")]
    Wire(#[from] WireError),
    #[error("kernel accepted endpoint {0} but does not list it")]
    AddedEndpointMissing(IpAddr),
    #[error("kernel sent no reply to {0}")]
    NoReply(&'static str),
    #[error("generic netlink family {0:?} not found (kernel without MPTCP?)")]
    FamilyNotFound(&'static str),
}

impl PmError {
    /// The errno of a kernel rejection, if this is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Self::Netlink(e) => e.errno(),
            _ => None,
        }
    }

    /// The kernel's extended-ACK message, if it sent one.
    pub fn kernel_message(&self) -> Option<&str> {
        match self {
            Self::Netlink(e) => e.kernel_message(),
            _ => None,
        }
    }
}

/// Handle on the in-kernel path manager of the network namespace the
/// opening thread was in. Blocking; one request at a time.
#[derive(Debug)]
pub struct MptcpPm {
    sock: GenlSocket,
    family: u16,
}

impl MptcpPm {
    /// Opens a generic netlink socket and resolves the `mptcp_pm` family.
    pub fn open() -> Result<Self, PmError> {
        let mut sock = GenlSocket::open()?;
        let family = sock.resolve_family(FAMILY_NAME)?;
        Ok(Self { sock, family })
    }

    fn call(
        &mut self,
        op: &'static str,
        cmd: u8,
        attrs: &[DefaultNla],
        dump: bool,
    ) -> Result<Vec<PmMessage>, PmError> {
        let mut msg = GenlMessage::from_payload(PmMessage::new(cmd, attrs));
        msg.set_resolved_family_id(self.family);
        Ok(self.sock.request(op, msg, dump)?)
    }

    /// Current limits (`ip mptcp limits show`).
    pub fn limits(&mut self) -> Result<Limits, PmError> {
        let reply = self.call("get limits", cmd::GET_LIMITS, &[], false)?;
        let first = reply.first().ok_or(PmError::NoReply("get limits"))?;
        Ok(decode_limits(&first.attrs)?)
    }

    /// Sets both limits (`ip mptcp limits set subflows N add_addr_accepted M`).
    pub fn set_limits(&mut self, limits: Limits) -> Result<(), PmError> {
        self.call("set limits", cmd::SET_LIMITS, &limits_nlas(limits), false)?;
        Ok(())
    }

    /// All endpoints (`ip mptcp endpoint show`), in kernel order.
    pub fn endpoints(&mut self) -> Result<Vec<Endpoint>, PmError> {
        self.call("get endpoints", cmd::GET_ADDR, &[], true)?
            .iter()
            .map(|m| decode_endpoint(&m.attrs).map_err(PmError::from))
            .collect()
    }

    /// One endpoint by id (`ip mptcp endpoint show id N`).
    pub fn endpoint(&mut self, id: u8) -> Result<Endpoint, PmError> {
        let spec = AddrSpec {
            id: Some(id),
            ..AddrSpec::default()
        };
        let reply = self.call("get endpoint", cmd::GET_ADDR, &[spec.to_nla()], false)?;
        let first = reply.first().ok_or(PmError::NoReply("get endpoint"))?;
        Ok(decode_endpoint(&first.attrs)?)
    }

    /// Adds an endpoint (`ip mptcp endpoint add ...`) and returns its id
    /// (the requested one, or the one the kernel picked).
    pub fn add_endpoint(&mut self, ep: &NewEndpoint) -> Result<u8, PmError> {
        let spec = AddrSpec {
            id: ep.id,
            addr: Some(ep.addr),
            port: ep.port,
            flags: Some(ep.flags),
            ifindex: ep.ifindex,
        };
        self.call("add endpoint", cmd::ADD_ADDR, &[spec.to_nla()], false)?;
        if let Some(id) = ep.id.filter(|id| *id != 0) {
            return Ok(id);
        }
        // The kernel does not return the id it picked: find the entry, which
        // is unique per address (and port).
        self.endpoints()?
            .into_iter()
            .find(|e| e.addr == ep.addr && e.port == ep.port.filter(|p| *p != 0))
            .map(|e| e.id)
            .ok_or(PmError::AddedEndpointMissing(ep.addr))
    }

    /// Deletes endpoint `id` (`ip mptcp endpoint delete id N [ADDR]`). With
    /// id 0 and an address, closes the initial subflows using that address.
    pub fn delete_endpoint(&mut self, id: u8, addr: Option<IpAddr>) -> Result<(), PmError> {
        let spec = AddrSpec {
            id: Some(id),
            addr,
            ..AddrSpec::default()
        };
        self.call("delete endpoint", cmd::DEL_ADDR, &[spec.to_nla()], false)?;
        Ok(())
    }

    /// Changes the `backup`/`fullmesh` flags of endpoint `id`
    /// (`ip mptcp endpoint change id N [no]backup`); id 0 needs the address.
    pub fn set_endpoint_flags(
        &mut self,
        id: u8,
        addr: Option<IpAddr>,
        flags: EndpointFlags,
    ) -> Result<(), PmError> {
        let spec = AddrSpec {
            id: Some(id),
            addr,
            flags: Some(flags),
            ..AddrSpec::default()
        };
        self.call(
            "set endpoint flags",
            cmd::SET_FLAGS,
            &[spec.to_nla()],
            false,
        )?;
        Ok(())
    }

    /// Deletes every endpoint (`ip mptcp endpoint flush`).
    pub fn flush_endpoints(&mut self) -> Result<(), PmError> {
        self.call("flush endpoints", cmd::FLUSH_ADDRS, &[], false)?;
        Ok(())
    }
}
