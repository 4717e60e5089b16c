//! rtnetlink inside a testbed namespace: the netlink socket is opened on a
//! thread that joined the namespace (a socket stays in the namespace it was
//! made in), then driven by the caller's tokio runtime.

use std::net::{IpAddr, Ipv4Addr};

use futures_util::TryStreamExt;
use ipnet::Ipv4Net;
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};

/// Errors of netlink work in a namespace.
#[derive(Debug, thiserror::Error)]
pub enum NlError {
    /// Not inside a tokio runtime.
    #[error("Netlink needs a tokio runtime")]
    NoRuntime,
    /// The namespace could not be entered.
    #[error("Cannot enter the namespace")]
    Netns(#[source] edgemig_netns::NetnsError),
    /// The socket could not be opened.
    #[error("Cannot open a netlink socket in {0}")]
    Socket(String, #[source] std::io::Error),
    /// A request failed.
    #[error("Netlink request failed in {netns}: {what}")]
    Request {
        /// Namespace.
        netns: String,
        /// What was attempted.
        what: String,
        /// The kernel's answer.
        #[source]
        source: rtnetlink::Error,
    },
    /// A device is missing.
    #[error("No device {name} in {netns}")]
    NoDevice {
        /// Namespace.
        netns: String,
        /// Device.
        name: String,
    },
}

/// A netlink handle bound to one namespace.
#[derive(Debug, Clone)]
pub struct NsNetlink {
    netns: String,
    handle: Handle,
}

impl NsNetlink {
    /// Opens a netlink socket in namespace `netns`.
    pub fn open(netns: &str) -> Result<Self, NlError> {
        let rt = tokio::runtime::Handle::try_current().map_err(|_| NlError::NoRuntime)?;
        let inner = rt.clone();
        let made = edgemig_netns::in_netns(netns, move || {
            let _guard = inner.enter();
            rtnetlink::new_connection().map(|(conn, handle, _)| (conn, handle))
        })
        .map_err(NlError::Netns)?;
        let (conn, handle) = made.map_err(|e| NlError::Socket(netns.to_string(), e))?;
        rt.spawn(conn);
        Ok(Self {
            netns: netns.to_string(),
            handle,
        })
    }

    fn fail(&self, what: String) -> impl FnOnce(rtnetlink::Error) -> NlError {
        let netns = self.netns.clone();
        move |source| NlError::Request {
            netns,
            what,
            source,
        }
    }

    /// Index of device `name`.
    pub async fn index(&self, name: &str) -> Result<u32, NlError> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match links.try_next().await {
            Ok(Some(msg)) => Ok(msg.header.index),
            _ => Err(NlError::NoDevice {
                netns: self.netns.clone(),
                name: name.to_string(),
            }),
        }
    }

    /// Brings device `name` up.
    pub async fn up(&self, name: &str) -> Result<(), NlError> {
        let index = self.index(name).await?;
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(self.fail(format!("set {name} up")))
    }

    /// Adds `addr` to device `name`.
    pub async fn add_address(&self, name: &str, addr: Ipv4Net) -> Result<(), NlError> {
        let index = self.index(name).await?;
        self.handle
            .address()
            .add(index, IpAddr::V4(addr.addr()), addr.prefix_len())
            .execute()
            .await
            .map_err(self.fail(format!("add {addr} to {name}")))
    }

    /// Routes `dest` via `gateway`.
    pub async fn add_route(&self, dest: Ipv4Net, gateway: Ipv4Addr) -> Result<(), NlError> {
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(dest.network(), dest.prefix_len())
            .gateway(gateway)
            .build();
        self.handle
            .route()
            .add(route)
            .execute()
            .await
            .map_err(self.fail(format!("route {dest} via {gateway}")))
    }
}
