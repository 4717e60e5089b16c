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

fn is_exists(err: &rtnetlink::Error) -> bool {
    matches!(err, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -libc::EEXIST)
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

    /// Bytes sent so far by device `name` (kernel counters).
    pub async fn tx_bytes(&self, name: &str) -> Option<u64> {
        use rtnetlink::packet_route::link::LinkAttribute;
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        let msg = links.try_next().await.ok()??;
        msg.attributes.iter().find_map(|a| match a {
            LinkAttribute::Stats64(s) => Some(s.tx_bytes),
            _ => None,
        })
    }

    /// Creates the bridge `name` if missing, gives it `gateway/prefix_len`
    /// and brings it up. Returns its index.
    pub async fn ensure_bridge(
        &self,
        name: &str,
        gateway: Ipv4Addr,
        prefix_len: u8,
    ) -> Result<u32, NetdevError> {
        if self.index_of(name).await?.is_none() {
            let add = self
                .handle
                .link()
                .add(LinkBridge::new(name).up().build())
                .execute()
                .await;
            if let Err(source) = add
                && !is_exists(&source)
            {
                return Err(NetdevError::Request {
                    what: format!("create bridge {name}"),
                    source,
                });
            }
        }
        let index = self
            .index_of(name)
            .await?
            .ok_or_else(|| NetdevError::NotFound(name.to_string()))?;
        let addr = self
            .handle
            .address()
            .add(index, IpAddr::V4(gateway), prefix_len)
            .execute()
            .await;
        if let Err(source) = addr
            && !is_exists(&source)
        {
            return Err(NetdevError::Request {
                what: format!("add {gateway}/{prefix_len} to {name}"),
                source,
            });
        }
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
            let add = self
                .handle
                .link()
                .add(
                    LinkVxlan::new(name, vni)
                        .remote(remote)
                        .port(4789)
                        .up()
                        .build(),
                )
                .execute()
                .await;
            if let Err(source) = add
                && !is_exists(&source)
            {
                return Err(NetdevError::Request {
                    what: format!("create VXLAN {name} (vni {vni}) to {remote}"),
                    source,
                });
            }
        }
        let bridge_index = match self.index_of(bridge).await? {
            Some(i) => i,
            None => {
                let add = self
                    .handle
                    .link()
                    .add(LinkBridge::new(bridge).up().build())
                    .execute()
                    .await;
                if let Err(source) = add
                    && !is_exists(&source)
                {
                    return Err(NetdevError::Request {
                        what: format!("create bridge {bridge}"),
                        source,
                    });
                }
                self.index_of(bridge)
                    .await?
                    .ok_or_else(|| NetdevError::NotFound(bridge.to_string()))?
            }
        };
        self.set_up(bridge_index, bridge).await?;
        self.attach(name, Some(bridge_index)).await?;
        Ok(bridge_index)
    }

    /// Index of bridge `name` (None when it does not exist).
    pub async fn bridge_index(&self, name: &str) -> Result<Option<u32>, NetdevError> {
        self.index_of(name).await
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
