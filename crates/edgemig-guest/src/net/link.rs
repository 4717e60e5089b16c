//! Finding the interface a request means: by name (`eth1` in the busybox
//! guest) or, from protocol 3, by MAC address — real distributions name
//! their NICs `enp0s3` or `ens4`, and the host knows the MAC it gave each
//! NIC. With a MAC the name in the request is informative only.
//!
//! When several interfaces carry the MAC (a VLAN or macvlan on top of the
//! NIC inherits it) the one with the lowest index wins: the NIC itself,
//! created before anything stacked on it.

use edgemig_guest_proto::MacAddr;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};

use super::rtnl::{Rtnl, RtnlError};

/// What a request names: an interface name, and maybe a MAC that decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NicRef<'a> {
    /// The name given (informative when `mac` is set).
    pub name: &'a str,
    /// The MAC address, when given.
    pub mac: Option<MacAddr>,
}

impl<'a> NicRef<'a> {
    /// By name only.
    pub fn name(name: &'a str) -> Self {
        Self { name, mac: None }
    }
}

impl std::fmt::Display for NicRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.mac {
            Some(mac) => write!(f, "{} ({mac})", self.name),
            None => write!(f, "{}", self.name),
        }
    }
}

/// One interface as the kernel lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Interface index.
    pub index: u32,
    /// Its name.
    pub name: String,
    /// Its MAC address (none for loopback and tunnels without one).
    pub mac: Option<MacAddr>,
    /// Administratively up (`IFF_UP`).
    pub admin_up: bool,
    /// Has carrier (`IFF_LOWER_UP`).
    pub carrier: bool,
}

fn link_of(msg: &LinkMessage) -> Link {
    let mut link = Link {
        index: msg.header.index,
        name: String::new(),
        mac: None,
        admin_up: msg.header.flags.contains(LinkFlags::Up),
        carrier: msg.header.flags.contains(LinkFlags::LowerUp),
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => link.name = n.clone(),
            LinkAttribute::Address(a) => {
                link.mac = <[u8; 6]>::try_from(a.as_slice())
                    .ok()
                    .map(MacAddr)
                    .filter(|m| m.0 != [0; 6]);
            }
            _ => {}
        }
    }
    link
}

/// Every interface, by index.
pub fn links(rtnl: &mut Rtnl) -> Result<Vec<Link>, RtnlError> {
    let replies = rtnl.dump(
        "get links",
        RouteNetlinkMessage::GetLink(LinkMessage::default()),
    )?;
    let mut out: Vec<Link> = replies
        .iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => Some(link_of(l)),
            _ => None,
        })
        .collect();
    out.sort_by_key(|l| l.index);
    Ok(out)
}

/// The interface `nic` means: the one with its MAC when it has one, else
/// the one with its name. `ENODEV` (with a message naming what was
/// looked for) when there is none.
pub fn resolve(rtnl: &mut Rtnl, nic: NicRef<'_>) -> Result<Link, RtnlError> {
    let all = links(rtnl)?;
    let found = match nic.mac {
        Some(mac) => all.into_iter().find(|l| l.mac == Some(mac)),
        None => all.into_iter().find(|l| l.name == nic.name),
    };
    found.ok_or_else(|| RtnlError::Kernel {
        op: "find interface",
        errno: libc::ENODEV,
        message: Some(match nic.mac {
            Some(mac) => format!("no interface has MAC {mac}"),
            None => format!("no interface is named {}", nic.name),
        }),
    })
}

/// The real name of the interface `nic` means (opens its own socket).
pub fn resolve_name(nic: NicRef<'_>) -> Result<String, RtnlError> {
    let mut rtnl = Rtnl::open()?;
    Ok(resolve(&mut rtnl, nic)?.name)
}
