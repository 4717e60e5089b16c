//! Wire format of the `mptcp_pm` generic netlink family: command numbers,
//! attribute numbers (include/uapi/linux/mptcp_pm.h), the message payload
//! type, and encoding/decoding of limits and endpoints.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_core::{
    DecodeError, DefaultNla, Emitable, NLA_F_NESTED, NlaBuffer, NlasIterator, ParseableParametrized,
};
use netlink_packet_generic::{GenlFamily, GenlHeader};

use crate::types::{Endpoint, EndpointFlags, Limits};

/// Generic netlink family name of the in-kernel path manager.
pub(crate) const FAMILY_NAME: &str = "mptcp_pm";
/// `MPTCP_PM_VER`.
pub(crate) const FAMILY_VERSION: u8 = 1;

/// `MPTCP_PM_CMD_*`.
pub(crate) mod cmd {
    pub const ADD_ADDR: u8 = 1;
    pub const DEL_ADDR: u8 = 2;
    pub const GET_ADDR: u8 = 3;
    pub const FLUSH_ADDRS: u8 = 4;
    pub const SET_LIMITS: u8 = 5;
    pub const GET_LIMITS: u8 = 6;
    pub const SET_FLAGS: u8 = 7;
}

/// `MPTCP_PM_ATTR_*`.
const ATTR_ADDR: u16 = 1;
const ATTR_RCV_ADD_ADDRS: u16 = 2;
const ATTR_SUBFLOWS: u16 = 3;

/// `MPTCP_PM_ADDR_ATTR_*` (nested in `MPTCP_PM_ATTR_ADDR`).
const ADDR_FAMILY: u16 = 1;
const ADDR_ID: u16 = 2;
const ADDR_ADDR4: u16 = 3;
const ADDR_ADDR6: u16 = 4;
const ADDR_PORT: u16 = 5;
const ADDR_FLAGS: u16 = 6;
const ADDR_IF_IDX: u16 = 7;

/// Errors decoding a kernel reply of the `mptcp_pm` family.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("malformed netlink attribute: {0}")]
    Decode(#[from] DecodeError),
    #[error("reply lacks attribute {0}")]
    Missing(&'static str),
    #[error("attribute {attr} has {len} bytes")]
    BadLength { attr: &'static str, len: usize },
    #[error("endpoint has unknown address family {0}")]
    UnknownFamily(u16),
}

/// One `mptcp_pm` message: command plus already-encoded attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PmMessage {
    pub cmd: u8,
    pub attrs: Vec<u8>,
}

impl PmMessage {
    /// A request carrying the given attributes.
    pub fn new(cmd: u8, attrs: &[DefaultNla]) -> Self {
        Self {
            cmd,
            attrs: emit_all(attrs),
        }
    }
}

impl GenlFamily for PmMessage {
    fn family_name() -> &'static str {
        FAMILY_NAME
    }
    fn command(&self) -> u8 {
        self.cmd
    }
    fn version(&self) -> u8 {
        FAMILY_VERSION
    }
}

impl Emitable for PmMessage {
    fn buffer_len(&self) -> usize {
        self.attrs.len()
    }
    fn emit(&self, buffer: &mut [u8]) {
        buffer.copy_from_slice(&self.attrs);
    }
}

impl ParseableParametrized<[u8], GenlHeader> for PmMessage {
    fn parse_with_param(buf: &[u8], header: GenlHeader) -> Result<Self, DecodeError> {
        Ok(Self {
            cmd: header.cmd,
            attrs: buf.to_vec(),
        })
    }
}

fn emit_all(attrs: &[DefaultNla]) -> Vec<u8> {
    let mut buf = vec![0u8; attrs.buffer_len()];
    attrs.emit(&mut buf);
    buf
}

/// Fields of a nested `MPTCP_PM_ATTR_ADDR` in a request.
#[derive(Debug, Clone, Default)]
pub(crate) struct AddrSpec {
    pub id: Option<u8>,
    pub addr: Option<IpAddr>,
    pub port: Option<u16>,
    pub flags: Option<EndpointFlags>,
    pub ifindex: Option<u32>,
}

impl AddrSpec {
    /// The nested `MPTCP_PM_ATTR_ADDR` attribute.
    pub fn to_nla(&self) -> DefaultNla {
        let mut inner = Vec::new();
        match self.addr {
            Some(IpAddr::V4(a)) => {
                inner.push(u16_nla(ADDR_FAMILY, libc::AF_INET as u16));
                inner.push(DefaultNla::new(ADDR_ADDR4, a.octets().to_vec()));
            }
            Some(IpAddr::V6(a)) => {
                inner.push(u16_nla(ADDR_FAMILY, libc::AF_INET6 as u16));
                inner.push(DefaultNla::new(ADDR_ADDR6, a.octets().to_vec()));
            }
            None => {}
        }
        if let Some(id) = self.id {
            inner.push(DefaultNla::new(ADDR_ID, vec![id]));
        }
        if let Some(port) = self.port {
            inner.push(u16_nla(ADDR_PORT, port));
        }
        if let Some(flags) = self.flags {
            inner.push(u32_nla(ADDR_FLAGS, flags.bits()));
        }
        if let Some(ifindex) = self.ifindex {
            inner.push(u32_nla(ADDR_IF_IDX, ifindex));
        }
        DefaultNla::new(ATTR_ADDR | NLA_F_NESTED, emit_all(&inner))
    }
}

fn u16_nla(kind: u16, v: u16) -> DefaultNla {
    DefaultNla::new(kind, v.to_ne_bytes().to_vec())
}

fn u32_nla(kind: u16, v: u32) -> DefaultNla {
    DefaultNla::new(kind, v.to_ne_bytes().to_vec())
}

/// Attributes of a `SET_LIMITS` request.
pub(crate) fn limits_nlas(limits: Limits) -> [DefaultNla; 2] {
    [
        u32_nla(ATTR_RCV_ADD_ADDRS, limits.add_addr_accepted),
        u32_nla(ATTR_SUBFLOWS, limits.subflows),
    ]
}

fn attrs(buf: &[u8]) -> impl Iterator<Item = Result<NlaBuffer<&[u8]>, DecodeError>> {
    NlasIterator::new(buf)
}

fn fixed<const N: usize>(attr: &'static str, value: &[u8]) -> Result<[u8; N], WireError> {
    value.try_into().map_err(|_| WireError::BadLength {
        attr,
        len: value.len(),
    })
}

fn get_u32(attr: &'static str, value: &[u8]) -> Result<u32, WireError> {
    Ok(u32::from_ne_bytes(fixed(attr, value)?))
}

/// Decodes a `GET_LIMITS` reply.
pub(crate) fn decode_limits(buf: &[u8]) -> Result<Limits, WireError> {
    let (mut subflows, mut accepted) = (None, None);
    for nla in attrs(buf) {
        let nla = nla?;
        match nla.kind() {
            ATTR_SUBFLOWS => subflows = Some(get_u32("subflows", nla.value())?),
            ATTR_RCV_ADD_ADDRS => accepted = Some(get_u32("rcv_add_addrs", nla.value())?),
            _ => {}
        }
    }
    Ok(Limits {
        subflows: subflows.ok_or(WireError::Missing("subflows"))?,
        add_addr_accepted: accepted.ok_or(WireError::Missing("rcv_add_addrs"))?,
    })
}

/// Decodes a `GET_ADDR` reply (one endpoint).
pub(crate) fn decode_endpoint(buf: &[u8]) -> Result<Endpoint, WireError> {
    for nla in attrs(buf) {
        let nla = nla?;
        if nla.kind() == ATTR_ADDR {
            return decode_addr(nla.value());
        }
    }
    Err(WireError::Missing("addr"))
}

fn decode_addr(buf: &[u8]) -> Result<Endpoint, WireError> {
    let mut family = None;
    let (mut v4, mut v6) = (None, None);
    let mut ep = Endpoint {
        id: 0,
        addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        port: None,
        ifindex: None,
        flags: EndpointFlags::NONE,
    };
    let mut have_id = false;
    for nla in attrs(buf) {
        let nla = nla?;
        let v = nla.value();
        match nla.kind() {
            ADDR_FAMILY => family = Some(u16::from_ne_bytes(fixed("family", v)?)),
            ADDR_ID => {
                ep.id = u8::from_ne_bytes(fixed("id", v)?);
                have_id = true;
            }
            ADDR_ADDR4 => v4 = Some(Ipv4Addr::from(fixed::<4>("addr4", v)?)),
            ADDR_ADDR6 => v6 = Some(Ipv6Addr::from(fixed::<16>("addr6", v)?)),
            ADDR_PORT => ep.port = Some(u16::from_ne_bytes(fixed("port", v)?)).filter(|p| *p != 0),
            ADDR_FLAGS => ep.flags = EndpointFlags::from_bits(get_u32("flags", v)?),
            ADDR_IF_IDX => ep.ifindex = Some(get_u32("if_idx", v)?).filter(|i| *i != 0),
            _ => {}
        }
    }
    if !have_id {
        return Err(WireError::Missing("id"));
    }
    let family = family.ok_or(WireError::Missing("family"))?;
    ep.addr = match i32::from(family) {
        libc::AF_INET => IpAddr::V4(v4.ok_or(WireError::Missing("addr4"))?),
        libc::AF_INET6 => IpAddr::V6(v6.ok_or(WireError::Missing("addr6"))?),
        _ => return Err(WireError::UnknownFamily(family)),
    };
    Ok(ep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_round_trip() {
        let spec = AddrSpec {
            id: Some(7),
            addr: Some("10.1.2.3".parse().unwrap()),
            port: Some(4000),
            flags: Some(EndpointFlags::SIGNAL | EndpointFlags::BACKUP),
            ifindex: Some(3),
        };
        let msg = PmMessage::new(cmd::ADD_ADDR, &[spec.to_nla()]);
        // Nested flag set on the outer attribute, as the kernel expects.
        assert_eq!(
            u16::from_ne_bytes([msg.attrs[2], msg.attrs[3]]),
            ATTR_ADDR | NLA_F_NESTED
        );
        let ep = decode_endpoint(&msg.attrs).unwrap();
        assert_eq!(ep.id, 7);
        assert_eq!(ep.addr, "10.1.2.3".parse::<IpAddr>().unwrap());
        assert_eq!(ep.port, Some(4000));
        assert_eq!(ep.ifindex, Some(3));
        assert_eq!(ep.flags, EndpointFlags::SIGNAL | EndpointFlags::BACKUP);
    }

    #[test]
    fn ipv6_and_limits() {
        let spec = AddrSpec {
            id: Some(1),
            addr: Some("fd00::1".parse().unwrap()),
            ..AddrSpec::default()
        };
        let msg = PmMessage::new(cmd::ADD_ADDR, &[spec.to_nla()]);
        let ep = decode_endpoint(&msg.attrs).unwrap();
        assert_eq!(ep.addr, "fd00::1".parse::<IpAddr>().unwrap());
        assert_eq!(ep.port, None);

        let l = Limits {
            subflows: 3,
            add_addr_accepted: 5,
        };
        let msg = PmMessage::new(cmd::SET_LIMITS, &limits_nlas(l));
        assert_eq!(decode_limits(&msg.attrs).unwrap(), l);
    }

    #[test]
    fn missing_and_short_attrs_are_errors() {
        assert!(matches!(
            decode_endpoint(&[]),
            Err(WireError::Missing("addr"))
        ));
        let bad = PmMessage::new(cmd::GET_LIMITS, &[DefaultNla::new(ATTR_SUBFLOWS, vec![1])]);
        assert!(matches!(
            decode_limits(&bad.attrs),
            Err(WireError::BadLength { .. })
        ));
    }
}
