//! Typed IPv4 rtnetlink operations on top of [`Rtnl`]: link lookup and
//! up/down, addresses, routes and policy rules — the subset of `ip link`,
//! `ip addr`, `ip route` and `ip rule` the guest agent needs.

use std::net::{IpAddr, Ipv4Addr};

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::rtnl::{Rtnl, RtnlError};

/// An IPv4 address with its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cidr {
    /// The address.
    pub addr: Ipv4Addr,
    /// Prefix length (0..=32).
    pub prefix: u8,
}

impl Cidr {
    /// The network address (host bits cleared).
    pub fn network(self) -> Ipv4Addr {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0);
        Ipv4Addr::from(u32::from(self.addr) & mask)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?}: no /prefix"))?;
        let addr = a.parse().map_err(|e| format!("{s:?}: {e}"))?;
        let prefix = p
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("{s:?}: bad prefix length"))?;
        Ok(Self { addr, prefix })
    }
}

/// A route as [`routes`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Destination (`0.0.0.0/0` for a default route).
    pub dst: Cidr,
    /// Table id.
    pub table: u32,
    /// Gateway, if any.
    pub gateway: Option<Ipv4Addr>,
    /// Output interface, if any.
    pub oif: Option<u32>,
    /// The message itself, for deletion.
    msg: RouteMessage,
}

/// A policy rule as [`rules`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// `from` selector (`None` for `from all`).
    pub src: Option<IpAddr>,
    /// Priority.
    pub priority: Option<u32>,
    /// Table looked up.
    pub table: u32,
    /// The message itself, for deletion.
    msg: RuleMessage,
}

/// What [`link_state`] reports of an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkState {
    /// Interface index.
    pub index: u32,
    /// Administratively up (`IFF_UP`).
    pub admin_up: bool,
    /// Has carrier (`IFF_LOWER_UP`; only reported while administratively up).
    pub carrier: bool,
}

/// Index and up/carrier flags of the interface named `name`; `ENODEV`
/// when there is none.
pub fn link_state(rtnl: &mut Rtnl, name: &str) -> Result<LinkState, RtnlError> {
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
    rtnl.call("get link", RouteNetlinkMessage::GetLink(msg), 0)?
        .into_iter()
        .find_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => Some(LinkState {
                index: l.header.index,
                admin_up: l.header.flags.contains(LinkFlags::Up),
                carrier: l.header.flags.contains(LinkFlags::LowerUp),
            }),
            _ => None,
        })
        .ok_or(RtnlError::Kernel {
            op: "get link",
            errno: libc::ENODEV,
            message: None,
        })
}

/// Sets link `index` up or down (`ip link set dev X up|down`).
pub fn set_link_up(rtnl: &mut Rtnl, index: u32, up: bool) -> Result<(), RtnlError> {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg.header.flags = if up {
        LinkFlags::Up
    } else {
        LinkFlags::empty()
    };
    msg.header.change_mask = LinkFlags::Up;
    rtnl.call("set link", RouteNetlinkMessage::SetLink(msg), 0)?;
    Ok(())
}

fn address_message(index: u32, cidr: Cidr) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.family = AddressFamily::Inet;
    msg.header.prefix_len = cidr.prefix;
    msg.header.scope = AddressScope::Universe;
    msg.header.index = index;
    let ip = IpAddr::V4(cidr.addr);
    msg.attributes.push(AddressAttribute::Local(ip));
    msg.attributes.push(AddressAttribute::Address(ip));
    if cidr.prefix < 31 {
        let host = u32::MAX.checked_shr(u32::from(cidr.prefix)).unwrap_or(0);
        let brd = Ipv4Addr::from(u32::from(cidr.network()) | host);
        msg.attributes.push(AddressAttribute::Broadcast(brd));
    }
    msg
}

/// The IPv4 addresses of link `index`, in kernel order.
pub fn addresses(rtnl: &mut Rtnl, index: u32) -> Result<Vec<Cidr>, RtnlError> {
    Ok(all_addresses(rtnl)?
        .into_iter()
        .filter(|(i, _)| *i == index)
        .map(|(_, c)| c)
        .collect())
}

/// Every IPv4 address of every link, as `(link index, address)`, in kernel
/// order.
pub fn all_addresses(rtnl: &mut Rtnl) -> Result<Vec<(u32, Cidr)>, RtnlError> {
    let mut req = AddressMessage::default();
    req.header.family = AddressFamily::Inet;
    let replies = rtnl.dump("get addresses", RouteNetlinkMessage::GetAddress(req))?;
    Ok(replies
        .into_iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewAddress(a) if a.header.family == AddressFamily::Inet => {
                let local = a.attributes.iter().find_map(|attr| match attr {
                    AddressAttribute::Local(IpAddr::V4(ip)) => Some(*ip),
                    _ => None,
                });
                let addr = local.or_else(|| {
                    a.attributes.iter().find_map(|attr| match attr {
                        AddressAttribute::Address(IpAddr::V4(ip)) => Some(*ip),
                        _ => None,
                    })
                })?;
                Some((
                    a.header.index,
                    Cidr {
                        addr,
                        prefix: a.header.prefix_len,
                    },
                ))
            }
            _ => None,
        })
        .collect())
}

/// Adds `cidr` to link `index` (`ip addr add`); `EEXIST` when present.
pub fn add_address(rtnl: &mut Rtnl, index: u32, cidr: Cidr) -> Result<(), RtnlError> {
    let msg = address_message(index, cidr);
    rtnl.call(
        "add address",
        RouteNetlinkMessage::NewAddress(msg),
        NLM_F_CREATE | NLM_F_EXCL,
    )?;
    Ok(())
}

/// Removes `cidr` from link `index` (`ip addr del`).
pub fn del_address(rtnl: &mut Rtnl, index: u32, cidr: Cidr) -> Result<(), RtnlError> {
    let msg = address_message(index, cidr);
    rtnl.call("delete address", RouteNetlinkMessage::DelAddress(msg), 0)?;
    Ok(())
}

/// What a route to add looks like.
#[derive(Debug, Clone, Copy)]
pub struct NewRoute {
    /// Destination.
    pub dst: Cidr,
    /// Table id.
    pub table: u32,
    /// Gateway (`None` for an on-link route).
    pub gateway: Option<Ipv4Addr>,
    /// Output interface.
    pub oif: u32,
    /// Preferred source address.
    pub src: Option<Ipv4Addr>,
}

/// Adds or replaces a unicast route (`ip route replace ...`).
pub fn replace_route(rtnl: &mut Rtnl, r: &NewRoute) -> Result<(), RtnlError> {
    let mut msg = RouteMessage::default();
    msg.header = RouteHeader {
        address_family: AddressFamily::Inet,
        destination_prefix_length: r.dst.prefix,
        table: u8::try_from(r.table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC),
        protocol: RouteProtocol::Static,
        scope: if r.gateway.is_some() {
            RouteScope::Universe
        } else {
            RouteScope::Link
        },
        kind: RouteType::Unicast,
        ..RouteHeader::default()
    };
    let attrs = &mut msg.attributes;
    attrs.push(RouteAttribute::Table(r.table));
    if r.dst.prefix > 0 {
        attrs.push(RouteAttribute::Destination(RouteAddress::Inet(
            r.dst.network(),
        )));
    }
    if let Some(gw) = r.gateway {
        attrs.push(RouteAttribute::Gateway(RouteAddress::Inet(gw)));
    }
    if let Some(src) = r.src {
        attrs.push(RouteAttribute::PrefSource(RouteAddress::Inet(src)));
    }
    attrs.push(RouteAttribute::Oif(r.oif));
    rtnl.call(
        "replace route",
        RouteNetlinkMessage::NewRoute(msg),
        NLM_F_CREATE | NLM_F_REPLACE,
    )?;
    Ok(())
}

/// Every IPv4 unicast route of every table.
pub fn routes(rtnl: &mut Rtnl) -> Result<Vec<Route>, RtnlError> {
    let mut req = RouteMessage::default();
    req.header.address_family = AddressFamily::Inet;
    let replies = rtnl.dump("get routes", RouteNetlinkMessage::GetRoute(req))?;
    Ok(replies
        .into_iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewRoute(msg) if msg.header.kind == RouteType::Unicast => {
                Some(route_of(msg))
            }
            _ => None,
        })
        .collect())
}

fn route_of(msg: RouteMessage) -> Route {
    let mut route = Route {
        dst: Cidr {
            addr: Ipv4Addr::UNSPECIFIED,
            prefix: msg.header.destination_prefix_length,
        },
        table: u32::from(msg.header.table),
        gateway: None,
        oif: None,
        msg: RouteMessage::default(),
    };
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Destination(RouteAddress::Inet(a)) => route.dst.addr = *a,
            RouteAttribute::Gateway(RouteAddress::Inet(a)) => route.gateway = Some(*a),
            RouteAttribute::Oif(i) => route.oif = Some(*i),
            RouteAttribute::Table(t) => route.table = *t,
            _ => {}
        }
    }
    route.msg = msg;
    route
}

/// Deletes a route [`routes`] listed.
pub fn del_route(rtnl: &mut Rtnl, route: &Route) -> Result<(), RtnlError> {
    let msg = route.msg.clone();
    rtnl.call("delete route", RouteNetlinkMessage::DelRoute(msg), 0)?;
    Ok(())
}

/// Adds `from <src>/32 lookup <table>` at `priority` (`ip rule add`);
/// `EEXIST` when an identical rule exists.
pub fn add_rule(
    rtnl: &mut Rtnl,
    src: Ipv4Addr,
    table: u32,
    priority: u32,
) -> Result<(), RtnlError> {
    let mut msg = RuleMessage::default();
    msg.header.family = AddressFamily::Inet;
    msg.header.src_len = 32;
    msg.header.table = u8::try_from(table).unwrap_or(0);
    msg.header.action = RuleAction::ToTable;
    msg.attributes = vec![
        RuleAttribute::Source(IpAddr::V4(src)),
        RuleAttribute::Table(table),
        RuleAttribute::Priority(priority),
    ];
    rtnl.call(
        "add rule",
        RouteNetlinkMessage::NewRule(msg),
        NLM_F_CREATE | NLM_F_EXCL,
    )?;
    Ok(())
}

/// Every IPv4 policy rule.
pub fn rules(rtnl: &mut Rtnl) -> Result<Vec<Rule>, RtnlError> {
    let mut req = RuleMessage::default();
    req.header.family = AddressFamily::Inet;
    let replies = rtnl.dump("get rules", RouteNetlinkMessage::GetRule(req))?;
    Ok(replies
        .into_iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewRule(msg) => {
                let mut rule = Rule {
                    src: None,
                    priority: None,
                    table: u32::from(msg.header.table),
                    msg: RuleMessage::default(),
                };
                for attr in &msg.attributes {
                    match attr {
                        RuleAttribute::Source(a) => rule.src = Some(*a),
                        RuleAttribute::Priority(p) => rule.priority = Some(*p),
                        RuleAttribute::Table(t) => rule.table = *t,
                        _ => {}
                    }
                }
                rule.msg = msg;
                Some(rule)
            }
            _ => None,
        })
        .collect())
}

/// Deletes a rule [`rules`] listed.
pub fn del_rule(rtnl: &mut Rtnl, rule: &Rule) -> Result<(), RtnlError> {
    let msg = rule.msg.clone();
    rtnl.call("delete rule", RouteNetlinkMessage::DelRule(msg), 0)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parse_and_network() {
        let c: Cidr = "10.20.0.5/24".parse().unwrap();
        assert_eq!(c.addr, Ipv4Addr::new(10, 20, 0, 5));
        assert_eq!(c.network(), Ipv4Addr::new(10, 20, 0, 0));
        assert_eq!(c.to_string(), "10.20.0.5/24");
        let all: Cidr = "1.2.3.4/0".parse().unwrap();
        assert_eq!(all.network(), Ipv4Addr::UNSPECIFIED);
        assert!("10.0.0.1".parse::<Cidr>().is_err());
        assert!("10.0.0.1/33".parse::<Cidr>().is_err());
        assert!("x/8".parse::<Cidr>().is_err());
    }
}
