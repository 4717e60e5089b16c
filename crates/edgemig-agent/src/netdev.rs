//! Host network devices of the site's VM network, through rtnetlink: the VM
//! bridge with its gateway address, QEMU's TAP devices attached to it, and
//! the bridge's forwarding entry of a VM's MAC address.

use std::net::{IpAddr, Ipv4Addr};

use futures_util::TryStreamExt;
use rtnetlink::packet_route::neighbour::{NeighbourFlags, NeighbourState};
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVxlan};

/// Errors of network device set-up.
#[derive(Debug, thiserror::Error)]
pub enum NetdevError {
    /// The netlink socket could not be opened.
    #[error("Cannot open a netlink socket")]
    Connect(#[source] std::io::Error),
    /// A netlink request failed.
    #[error("Netlink request failed: {what}")]
    Request {
        /// What was attempted.
        what: String,
        /// The kernel's answer.
        #[source]
        source: rtnetlink::Error,
    },
    /// A device does not exist.
    #[error("Network device {0} not found")]
    NotFound(String),
}

/// A netlink handle in the agent's network namespace.
#[derive(Debug, Clone)]
pub struct Netdev {
    handle: Handle,
}

/// Treats "already exists" as success; `what` names the request otherwise.
fn allow_exists(
    result: Result<(), rtnetlink::Error>,
    what: impl FnOnce() -> String,
) -> Result<(), NetdevError> {
    match result {
        Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code() == -libc::EEXIST => Ok(()),
        Err(source) => Err(NetdevError::Request {
            what: what(),
            source,
        }),
        Ok(()) => Ok(()),
    }
}

impl Netdev {
    /// Opens a netlink connection (driven by a tokio task).
    pub fn connect() -> Result<Self, NetdevError> {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(NetdevError::Connect)?;
        tokio::spawn(connection);
        Ok(Self { handle })
    }

    /// Index of the device named `name`, if it exists.
    pub async fn index_of(&self, name: &str) -> Result<Option<u32>, NetdevError> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match links.try_next().await {
            Ok(Some(msg)) => Ok(Some(msg.header.index)),
            Ok(None) => Ok(None),
            Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code() == -libc::ENODEV => Ok(None),
            Err(source) => Err(NetdevError::Request {
                what: format!("look up {name}"),
                source,
            }),
        }
    }

    /// Addresses of device `name` (empty when it does not exist).
    pub async fn addresses_of(&self, name: &str) -> Vec<IpAddr> {
        use rtnetlink::packet_route::address::AddressAttribute;
        let Ok(Some(index)) = self.index_of(name).await else {
            return Vec::new();
        };
        let mut addrs = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        let mut out = Vec::new();
        while let Ok(Some(msg)) = addrs.try_next().await {
            out.extend(msg.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            }));
        }
        out
    }

    /// Creates the bridge `name` if missing, gives it `gateway/prefix_len`
    /// and a fixed MAC address ([`gateway_mac`]), and brings it up. Returns
    /// its index. The fixed MAC matters: a bridge otherwise takes its
    /// ports' lowest MAC, which changes as VMs and tunnels come and go, and
    /// a guest that keeps talking to the gateway keeps its old ARP entry
    /// (TCP confirms it) and sends its packets to a MAC nobody has.
    pub async fn ensure_bridge(
        &self,
        name: &str,
        gateway: Ipv4Addr,
        prefix_len: u8,
    ) -> Result<u32, NetdevError> {
        let index = self.create_bridge(name).await?;
        self.handle
            .link()
            .set(
                LinkUnspec::new_with_index(index)
                    .address(gateway_mac(gateway).to_vec())
                    .build(),
            )
            .execute()
            .await
            .map_err(|source| NetdevError::Request {
                what: format!("set the MAC address of {name}"),
                source,
            })?;
        let added = self
            .handle
            .address()
            .add(index, IpAddr::V4(gateway), prefix_len)
            .execute()
            .await;
        allow_exists(added, || format!("add {gateway}/{prefix_len} to {name}"))?;
        Ok(index)
    }

    /// Creates bridge `name` unless it exists, brings it up, returns its index.
    /// (Tunnel bridges carry no address: their MAC does not matter.)
    async fn create_bridge(&self, name: &str) -> Result<u32, NetdevError> {
        if self.index_of(name).await?.is_none() {
            let added = self
                .handle
                .link()
                .add(LinkBridge::new(name).up().build())
                .execute()
                .await;
            allow_exists(added, || format!("create bridge {name}"))?;
        }
        let index = self
            .index_of(name)
            .await?
            .ok_or_else(|| NetdevError::NotFound(name.to_string()))?;
        self.set_up(index, name).await?;
        Ok(index)
    }

    async fn set_up(&self, index: u32, name: &str) -> Result<(), NetdevError> {
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(|source| NetdevError::Request {
                what: format!("set {name} up"),
                source,
            })
    }

    /// Creates a VXLAN device `name` with `vni` toward `remote` (UDP 4789)
    /// and a bridge `bridge` holding it; returns the bridge's index. Either
    /// may exist already.
    pub async fn ensure_tunnel(
        &self,
        name: &str,
        bridge: &str,
        vni: u32,
        remote: Ipv4Addr,
    ) -> Result<u32, NetdevError> {
        if self.index_of(name).await?.is_none() {
            let vxlan = LinkVxlan::new(name, vni)
                .remote(remote)
                .port(4789)
                .up()
                .build();
            let added = self.handle.link().add(vxlan).execute().await;
            allow_exists(added, || {
                format!("create VXLAN {name} (vni {vni}) to {remote}")
            })?;
        }
        let bridge_index = self.create_bridge(bridge).await?;
        self.attach(name, Some(bridge_index)).await?;
        Ok(bridge_index)
    }

    /// Deletes device `name` if it exists.
    pub async fn delete(&self, name: &str) -> Result<(), NetdevError> {
        if let Some(index) = self.index_of(name).await? {
            self.handle
                .link()
                .del(index)
                .execute()
                .await
                .map_err(|source| NetdevError::Request {
                    what: format!("delete {name}"),
                    source,
                })?;
        }
        Ok(())
    }

    /// Points the forwarding entry of `mac` in the bridge that holds port
    /// `port` at that port (`bridge fdb replace MAC dev PORT master
    /// dynamic`): frames for the MAC leave by `port` from now on, until the
    /// bridge learns the MAC elsewhere or the entry ages out.
    pub async fn steer(&self, port: &str, mac: [u8; 6]) -> Result<(), NetdevError> {
        self.put_entry(
            port,
            mac,
            NeighbourFlags::Controller,
            NeighbourState::Reachable,
            "steer",
        )
        .await
    }

    /// Pins `mac` to port `port` of its bridge (`bridge fdb replace MAC dev
    /// PORT master static sticky`): frames for the MAC always leave by
    /// `port`, whatever the bridge sees elsewhere. The entry goes with the
    /// port.
    pub async fn pin(&self, port: &str, mac: [u8; 6]) -> Result<(), NetdevError> {
        self.put_entry(
            port,
            mac,
            NeighbourFlags::Controller | NeighbourFlags::Sticky,
            NeighbourState::Noarp,
            "pin",
        )
        .await
    }

    /// Puts (or replaces) the bridge's forwarding entry of `mac` at port
    /// `port` with `flags` and `state`; `verb` names it in errors.
    async fn put_entry(
        &self,
        port: &str,
        mac: [u8; 6],
        flags: NeighbourFlags,
        state: NeighbourState,
        verb: &str,
    ) -> Result<(), NetdevError> {
        let index = self
            .index_of(port)
            .await?
            .ok_or_else(|| NetdevError::NotFound(port.to_string()))?;
        self.handle
            .neighbours()
            .add_bridge(index, &mac)
            .flags(flags)
            .state(state)
            .replace()
            .execute()
            .await
            .map_err(|source| NetdevError::Request {
                what: format!("{verb} {} to {port}", format_mac(mac)),
                source,
            })
    }

    /// Removes the forwarding entry of `mac` at port `port` of its bridge,
    /// if there is one (the bridge learns the MAC again from its frames).
    pub async fn unsteer(&self, port: &str, mac: [u8; 6]) -> Result<(), NetdevError> {
        let Some(index) = self.index_of(port).await? else {
            return Ok(());
        };
        let mut entry = rtnetlink::packet_route::neighbour::NeighbourMessage::default();
        entry.header.family = rtnetlink::packet_route::AddressFamily::Bridge;
        entry.header.ifindex = index;
        entry.header.flags = NeighbourFlags::Controller;
        entry.attributes.push(
            rtnetlink::packet_route::neighbour::NeighbourAttribute::LinkLayerAddress(mac.to_vec()),
        );
        match self.handle.neighbours().del(entry).execute().await {
            Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code() == -libc::ENOENT => Ok(()),
            Err(source) => Err(NetdevError::Request {
                what: format!("remove the entry of {} at {port}", format_mac(mac)),
                source,
            }),
            Ok(()) => Ok(()),
        }
    }

    /// Brings device `name` up and, with `bridge`, attaches it there.
    pub async fn attach(&self, name: &str, bridge: Option<u32>) -> Result<(), NetdevError> {
        let index = self
            .index_of(name)
            .await?
            .ok_or_else(|| NetdevError::NotFound(name.to_string()))?;
        if let Some(bridge) = bridge {
            self.handle
                .link()
                .set(LinkUnspec::new_with_index(index).controller(bridge).build())
                .execute()
                .await
                .map_err(|source| NetdevError::Request {
                    what: format!("attach {name} to bridge {bridge}"),
                    source,
                })?;
        }
        self.set_up(index, name).await
    }
}

/// The six bytes of a MAC address written `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// `mac` as `aa:bb:cc:dd:ee:ff`.
fn format_mac(mac: [u8; 6]) -> String {
    mac.map(|b| format!("{b:02x}")).join(":")
}

/// The fixed MAC of a site's VM bridge with gateway `gateway`: locally
/// administered, `02:ed` then the gateway's four octets (unique per VM
/// network).
pub fn gateway_mac(gateway: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = gateway.octets();
    [0x02, 0xed, a, b, c, d]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_are_read_as_written_and_nothing_else_is() {
        let mac = [0x52, 0x54, 0x01, 0xab, 0x0c, 0xff];
        assert_eq!(parse_mac("52:54:01:ab:0c:ff"), Some(mac));
        assert_eq!(format_mac(mac), "52:54:01:ab:0c:ff");
        for bad in [
            "",
            "52:54:01:ab:0c",
            "52:54:01:ab:0c:ff:00",
            "52:54:1:ab:0c:ff",
            "52:54:01:ab:0c:fg",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
    }
}
