//! Plain data types of the MPTCP in-kernel path manager: limits, endpoint
//! flags and endpoints as the kernel reports them.

use std::fmt;
use std::net::IpAddr;
use std::ops::{BitOr, BitOrAssign};

/// Per-namespace limits of the in-kernel path manager
/// (`ip mptcp limits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Limits {
    /// Maximum number of additional subflows per MPTCP connection
    /// (`MPTCP_PM_ATTR_SUBFLOWS`; the kernel caps it at 8).
    pub subflows: u32,
    /// Maximum number of addresses announced by the peer (ADD_ADDR) that are
    /// accepted per connection (`MPTCP_PM_ATTR_RCV_ADD_ADDRS`; default 0,
    /// so clients need this raised to follow a migrated VM).
    pub add_addr_accepted: u32,
}

/// Endpoint flags (`MPTCP_PM_ADDR_FLAG_*`), a small bit set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct EndpointFlags(u32);

impl EndpointFlags {
    /// No flags: the endpoint is only used as a local id.
    pub const NONE: Self = Self(0);
    /// Announce this address to peers (ADD_ADDR).
    pub const SIGNAL: Self = Self(1);
    /// Open additional subflows from this address.
    pub const SUBFLOW: Self = Self(2);
    /// Subflows over this address are backup paths.
    pub const BACKUP: Self = Self(4);
    /// Open a subflow from this address to every known peer address.
    pub const FULLMESH: Self = Self(8);

    const NAMES: [(Self, &'static str); 4] = [
        (Self::SIGNAL, "signal"),
        (Self::SUBFLOW, "subflow"),
        (Self::BACKUP, "backup"),
        (Self::FULLMESH, "fullmesh"),
    ];

    /// Flags from the raw kernel bit mask (unknown bits are kept).
    pub const fn from_bits(bits: u32) -> Self {
        Self(bits)
    }

    /// The raw kernel bit mask.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// True when every bit of `other` is set in `self`.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

impl BitOr for EndpointFlags {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl BitOrAssign for EndpointFlags {
    fn bitor_assign(&mut self, rhs: Self) {
        self.0 |= rhs.0;
    }
}

impl fmt::Display for EndpointFlags {
    /// Space-separated names as `ip mptcp endpoint show` prints them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        let mut first = true;
        for (flag, name) in Self::NAMES {
            if self.contains(flag) {
                if !first {
                    f.write_str(" ")?;
                }
                f.write_str(name)?;
                first = false;
                rest &= !flag.0;
            }
        }
        if rest != 0 {
            if !first {
                f.write_str(" ")?;
            }
            write!(f, "0x{rest:x}")?;
        }
        Ok(())
    }
}

/// One endpoint of the in-kernel path manager, as listed by the kernel.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// Local address id (1..=255; the kernel assigns one when none is given).
    pub id: u8,
    /// The local address.
    pub addr: IpAddr,
    /// Port, for `signal` endpoints that announce a specific port.
    pub port: Option<u16>,
    /// Interface the endpoint is bound to (`dev`).
    pub ifindex: Option<u32>,
    /// Endpoint flags.
    pub flags: EndpointFlags,
}

/// An endpoint to add ([`crate::MptcpPm::add_endpoint`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NewEndpoint {
    /// The local address.
    pub addr: IpAddr,
    /// Requested id; `None` lets the kernel pick one.
    pub id: Option<u8>,
    /// Port to announce (only meaningful with [`EndpointFlags::SIGNAL`]).
    pub port: Option<u16>,
    /// Interface to bind the endpoint to.
    pub ifindex: Option<u32>,
    /// Endpoint flags.
    pub flags: EndpointFlags,
}

impl NewEndpoint {
    /// An endpoint with the given address and flags, no id, port or interface.
    pub fn new(addr: IpAddr, flags: EndpointFlags) -> Self {
        Self {
            addr,
            id: None,
            port: None,
            ifindex: None,
            flags,
        }
    }

    /// Same endpoint, bound to interface `ifindex`.
    pub fn with_ifindex(mut self, ifindex: u32) -> Self {
        self.ifindex = Some(ifindex);
        self
    }

    /// Same endpoint, announcing `port` (a `signal` endpoint; the kernel
    /// listens there for the joins it invites).
    pub fn with_port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Same endpoint, with the requested id.
    pub fn with_id(mut self, id: u8) -> Self {
        self.id = Some(id);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_display_like_iproute2() {
        let f = EndpointFlags::SIGNAL | EndpointFlags::BACKUP;
        assert_eq!(f.to_string(), "signal backup");
        assert_eq!(EndpointFlags::from_bits(0x12).to_string(), "subflow 0x10");
        assert!(f.contains(EndpointFlags::SIGNAL));
        assert!(!f.contains(EndpointFlags::SUBFLOW));
    }
}
