//! What a dump asks for: address families, TCP states, and ports (the
//! ports are matched in user space after the kernel's state filter).

use std::net::SocketAddr;

use crate::state::StateSet;

/// Address families to dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Family {
    /// `AF_INET` sockets only.
    V4,
    /// `AF_INET6` sockets only (dual-stack sockets included).
    V6,
    /// Both, IPv4 first.
    #[default]
    Both,
}

impl Family {
    /// The `AF_*` numbers to dump, in order.
    pub(crate) fn address_families(self) -> &'static [u8] {
        const V4: u8 = libc::AF_INET as u8;
        const V6: u8 = libc::AF_INET6 as u8;
        match self {
            Self::V4 => &[V4],
            Self::V6 => &[V6],
            Self::Both => &[V4, V6],
        }
    }
}

/// Which TCP sockets to list. `Query::default()` lists every socket of
/// both families in every state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Query {
    /// States to report (filtered by the kernel).
    pub states: StateSet,
    /// Keep only sockets with this local port.
    pub local_port: Option<u16>,
    /// Keep only sockets with this remote port.
    pub remote_port: Option<u16>,
    /// Address families to dump.
    pub family: Family,
}

impl Query {
    /// Established sockets of both families, any port.
    pub fn established() -> Self {
        Self {
            states: StateSet::ESTABLISHED,
            ..Self::default()
        }
    }

    /// This query, keeping only sockets with local port `port`.
    #[must_use]
    pub fn with_local_port(self, port: u16) -> Self {
        Self {
            local_port: Some(port),
            ..self
        }
    }

    /// This query, keeping only sockets with remote port `port`.
    #[must_use]
    pub fn with_remote_port(self, port: u16) -> Self {
        Self {
            remote_port: Some(port),
            ..self
        }
    }

    /// Whether a socket with these ends passes the port filters.
    pub(crate) fn ports_match(&self, local: &SocketAddr, remote: &SocketAddr) -> bool {
        self.local_port.is_none_or(|p| p == local.port())
            && self.remote_port.is_none_or(|p| p == remote.port())
    }
}
