//! Host network devices of the site's VM network, through rtnetlink: the VM
//! bridge with its gateway address, and QEMU's TAP devices attached to it.

use std::net::{IpAddr, Ipv4Addr};

use futures_util::TryStreamExt;
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

/// The fixed MAC of a site's VM bridge with gateway `gateway`: locally
/// administered, `02:ed` then the gateway's four octets (unique per VM
/// network).
pub fn gateway_mac(gateway: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = gateway.octets();
    [0x02, 0xed, a, b, c, d]
}
