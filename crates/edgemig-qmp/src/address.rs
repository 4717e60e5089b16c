//! Socket and migration addresses as QEMU's QAPI spells them.
//!
//! Two encodings exist: the flat `SocketAddress` (`{"type": "inet",
//! "host": ..., "port": ...}`), used by `migrate`/`migrate-incoming`
//! channels, and the legacy one (`{"type": "inet", "data": {...}}`) still
//! required by `nbd-server-start`. [`SocketAddress`] serializes flat;
//! [`SocketAddress::to_legacy`] produces the other one.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// QAPI `InetSocketAddress`. `port` is a string in QAPI (service names
/// are allowed); `"0"` asks for an ephemeral port when listening.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct InetSocketAddress {
    pub host: String,
    pub port: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numeric: Option<bool>,
    /// Try ports `port..=to` when listening.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_alive: Option<bool>,
    /// Use Multipath TCP (QEMU >= 8.1 on Linux).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mptcp: Option<bool>,
}

impl InetSocketAddress {
    /// `host:port`, plain TCP.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        InetSocketAddress {
            host: host.into(),
            port: port.to_string(),
            ..Default::default()
        }
    }

    /// Sets the `mptcp` option (`Some(true)` when `on`, omitted otherwise).
    pub fn with_mptcp(mut self, on: bool) -> Self {
        self.mptcp = on.then_some(true);
        self
    }
}

/// QAPI `UnixSocketAddress`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnixSocketAddress {
    pub path: String,
}

/// QAPI `SocketAddress` (flat union on `type`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SocketAddress {
    Inet(InetSocketAddress),
    Unix(UnixSocketAddress),
}

impl SocketAddress {
    /// The legacy encoding (`{"type": ..., "data": {...}}`) that
    /// `nbd-server-start` wants.
    pub fn to_legacy(&self) -> Value {
        match self {
            SocketAddress::Inet(a) => json!({"type": "inet", "data": a}),
            SocketAddress::Unix(a) => json!({"type": "unix", "data": a}),
        }
    }
}

impl From<InetSocketAddress> for SocketAddress {
    fn from(a: InetSocketAddress) -> Self {
        SocketAddress::Inet(a)
    }
}

/// QAPI `MigrationAddress` (flat union on `transport`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "transport", rename_all = "lowercase")]
pub enum MigrationAddress {
    Socket(SocketAddress),
    Exec { args: Vec<String> },
    File { filename: String, offset: u64 },
}

/// QAPI `MigrationChannel`: one entry of `channels` in `migrate` and
/// `migrate-incoming`. QEMU 10.0 accepts exactly one `main` channel;
/// multifd connections reuse its address (and its `mptcp` option).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct MigrationChannel {
    /// `main` (or `cpr`).
    pub channel_type: String,
    pub addr: MigrationAddress,
}

impl MigrationChannel {
    /// The `main` channel over any socket address.
    pub fn main(addr: impl Into<SocketAddress>) -> Self {
        MigrationChannel {
            channel_type: "main".into(),
            addr: MigrationAddress::Socket(addr.into()),
        }
    }

    /// The `main` channel to/on `host:port` over TCP or MPTCP.
    pub fn main_inet(host: impl Into<String>, port: u16, mptcp: bool) -> Self {
        Self::main(InetSocketAddress::new(host, port).with_mptcp(mptcp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_channel_wire_format() {
        let ch = MigrationChannel::main_inet("10.0.0.2", 4444, true);
        assert_eq!(
            serde_json::to_value(&ch).unwrap(),
            json!({"channel-type": "main",
                   "addr": {"transport": "socket", "type": "inet",
                            "host": "10.0.0.2", "port": "4444", "mptcp": true}})
        );
        let back: MigrationChannel =
            serde_json::from_value(serde_json::to_value(&ch).unwrap()).expect("round trip");
        assert_eq!(back, ch);
        let plain = MigrationChannel::main_inet("h", 1, false);
        assert!(
            serde_json::to_string(&plain)
                .unwrap()
                .find("mptcp")
                .is_none()
        );
    }

    #[test]
    fn legacy_socket_address() {
        let a = SocketAddress::from(InetSocketAddress::new("0.0.0.0", 10809).with_mptcp(true));
        assert_eq!(
            a.to_legacy(),
            json!({"type": "inet", "data": {"host": "0.0.0.0", "port": "10809", "mptcp": true}})
        );
    }
}
