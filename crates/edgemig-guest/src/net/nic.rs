//! Bringing a NIC up at a new site and retiring the old one
//! (ARCHITECTURE.md, migration step 6), all over netlink.
//!
//! Routing layout for an interface with index `i` and address `A/p` via
//! gateway `G`:
//!
//! * table `100 + i`: `A/p`'s subnet `dev nic scope link src A` and
//!   `default via G dev nic`;
//! * rule `from A lookup 100+i`, priority `1000 + i`, so every subflow bound
//!   to `A` leaves through its own NIC;
//! * main table: `default via G dev nic` (replacing the previous default),
//!   so new connections use the new site;
//! * MPTCP endpoint `A signal dev nic`, announced with ADD_ADDR;
//!   announcing again ([`nic_reannounce`]) adds `A port P signal dev nic`.

use std::net::{IpAddr, Ipv4Addr};

use edgemig_guest_proto::NicReport;
use edgemig_mptcp::{EndpointFlags, MptcpPm, NewEndpoint, PmError};

use super::link::{self, NicRef};
use super::ops::{self, Cidr, NewRoute};
use super::rtnl::{Rtnl, RtnlError, tolerate};

/// Main routing table id.
pub const MAIN_TABLE: u32 = 254;
/// Policy table of interface `i` is `TABLE_BASE + i`.
pub const TABLE_BASE: u32 = 100;
/// Rule priority for interface `i` is `RULE_PRIORITY_BASE + i`.
pub const RULE_PRIORITY_BASE: u32 = 1000;

/// Errors of NIC changes.
#[derive(Debug, thiserror::Error)]
pub enum NicError {
    /// The request carries an unusable address or gateway.
    #[error("bad {what}: {detail}")]
    BadInput {
        /// `address` or `gateway`.
        what: &'static str,
        /// Why.
        detail: String,
    },
    /// An rtnetlink request failed.
    #[error("{nic}: {source}")]
    Rtnl {
        /// Interface.
        nic: String,
        /// The error.
        #[source]
        source: RtnlError,
    },
    /// A path-manager request failed.
    #[error("{nic}: MPTCP: {source}")]
    Mptcp {
        /// Interface.
        nic: String,
        /// The error.
        #[source]
        source: PmError,
    },
}

/// Policy table of interface `index`.
pub fn table_of(index: u32) -> u32 {
    TABLE_BASE + index
}

/// Rule priority of interface `index`.
pub fn priority_of(index: u32) -> u32 {
    RULE_PRIORITY_BASE + index
}

fn rt(nic: &str) -> impl Fn(RtnlError) -> NicError + '_ {
    move |source| NicError::Rtnl {
        nic: nic.to_owned(),
        source,
    }
}

fn pm(nic: &str) -> impl Fn(PmError) -> NicError + '_ {
    move |source| NicError::Mptcp {
        nic: nic.to_owned(),
        source,
    }
}

/// Parses the `address` (CIDR) and `gateway` of a NicUp or NicPlan.
pub fn parse_input(address: &str, gateway: &str) -> Result<(Cidr, Ipv4Addr), NicError> {
    let cidr: Cidr = address.parse().map_err(|detail| NicError::BadInput {
        what: "address",
        detail,
    })?;
    let gw: Ipv4Addr = gateway.parse().map_err(|e| NicError::BadInput {
        what: "gateway",
        detail: format!("{gateway:?}: {e}"),
    })?;
    Ok((cidr, gw))
}

/// Brings `nic` (by MAC when given, else by name) up with `address`
/// (CIDR) and `gateway`: policy routing, main default route, MPTCP
/// `signal` endpoint. Idempotent. The report names the real interface.
pub fn nic_up(nic: NicRef<'_>, address: &str, gateway: &str) -> Result<NicReport, NicError> {
    let (cidr, gw) = parse_input(address, gateway)?;
    let asked = nic.to_string();
    let mut rtnl = Rtnl::open().map_err(rt(&asked))?;
    let link = link::resolve(&mut rtnl, nic).map_err(rt(&asked))?;
    let nic = link.name.as_str();
    let index = link.index;
    ops::set_link_up(&mut rtnl, index, true).map_err(rt(nic))?;
    tolerate(ops::add_address(&mut rtnl, index, cidr), &[libc::EEXIST]).map_err(rt(nic))?;
    policy_routing(&mut rtnl, index, cidr, Some(gw)).map_err(rt(nic))?;
    let main = NewRoute {
        dst: DEFAULT,
        table: MAIN_TABLE,
        gateway: Some(gw),
        oif: index,
        src: None,
    };
    ops::replace_route(&mut rtnl, &main).map_err(rt(nic))?;

    let id = ensure_endpoint(IpAddr::V4(cidr.addr), index).map_err(pm(nic))?;
    Ok(NicReport {
        nic: nic.to_owned(),
        mac: link.mac,
        addresses: current_addresses(&mut rtnl, index).map_err(rt(nic))?,
        endpoints: vec![id],
    })
}

/// `0.0.0.0/0`.
const DEFAULT: Cidr = Cidr {
    addr: Ipv4Addr::UNSPECIFIED,
    prefix: 0,
};

/// Policy routing of address `cidr` on link `index`: table `100 + index`
/// with the connected subnet (`src` the address) and, given a gateway, a
/// default route through it; rule `from A lookup 100+index`. Idempotent.
fn policy_routing(
    rtnl: &mut Rtnl,
    index: u32,
    cidr: Cidr,
    gateway: Option<Ipv4Addr>,
) -> Result<(), RtnlError> {
    let table = table_of(index);
    let connected = NewRoute {
        dst: Cidr {
            addr: cidr.network(),
            prefix: cidr.prefix,
        },
        table,
        gateway: None,
        oif: index,
        src: Some(cidr.addr),
    };
    ops::replace_route(rtnl, &connected)?;
    if let Some(gw) = gateway {
        let via = NewRoute {
            dst: DEFAULT,
            table,
            gateway: Some(gw),
            oif: index,
            src: None,
        };
        ops::replace_route(rtnl, &via)?;
    }
    tolerate(
        ops::add_rule(rtnl, cidr.addr, table, priority_of(index)),
        &[libc::EEXIST],
    )
}

/// Gives every NIC but `except` that holds an IPv4 address (loopback
/// aside) its policy table and rule, so replies from its address keep
/// leaving through it once the main default route moves elsewhere. The
/// gateway is that of the NIC's default route in the main table, else in
/// its own table; without one, the table only gets the connected subnet.
/// Idempotent. Returns the `(interface index, address)` pairs handled.
pub fn ensure_policy_for_others(except: &str) -> Result<Vec<(u32, Cidr)>, NicError> {
    let mut rtnl = Rtnl::open().map_err(rt(except))?;
    let skip = link::resolve(&mut rtnl, NicRef::name(except))
        .map_err(rt(except))?
        .index;
    let others: Vec<(u32, Cidr)> = ops::all_addresses(&mut rtnl)
        .map_err(rt(except))?
        .into_iter()
        .filter(|(i, c)| *i != skip && !c.addr.is_loopback())
        .collect();
    if others.is_empty() {
        return Ok(others);
    }
    let routes = ops::routes(&mut rtnl).map_err(rt(except))?;
    for (index, cidr) in &others {
        let default_in = |table: u32| {
            routes.iter().find_map(|r| {
                (r.table == table && r.dst.prefix == 0 && r.oif == Some(*index))
                    .then_some(r.gateway)
                    .flatten()
            })
        };
        let gateway = default_in(MAIN_TABLE).or_else(|| default_in(table_of(*index)));
        policy_routing(&mut rtnl, *index, *cidr, gateway).map_err(|source| NicError::Rtnl {
            nic: format!("interface {index} ({cidr})"),
            source,
        })?;
    }
    Ok(others)
}

/// Id of the `signal` endpoint for `addr` on `ifindex`, added if missing
/// (an endpoint for `addr` with other flags or interface is replaced).
/// Endpoints with a port (from [`nic_reannounce`]) are left alone.
fn ensure_endpoint(addr: IpAddr, ifindex: u32) -> Result<u8, PmError> {
    let mut pm = MptcpPm::open()?;
    if let Some(ep) = pm
        .endpoints()?
        .into_iter()
        .find(|e| e.addr == addr && e.port.is_none())
    {
        if ep.flags.contains(EndpointFlags::SIGNAL) && ep.ifindex == Some(ifindex) {
            return Ok(ep.id);
        }
        pm.delete_endpoint(ep.id, Some(addr))?;
    }
    pm.add_endpoint(&NewEndpoint::new(addr, EndpointFlags::SIGNAL).with_ifindex(ifindex))
}

/// Announces `address` (with or without a prefix), held by `nic`, once
/// more to every established MPTCP connection: a further `signal`
/// endpoint for it on a free port, which the kernel announces (ADD_ADDR)
/// to each connection and listens on for joins. The report's `endpoints`
/// is the new endpoint's id.
pub fn nic_reannounce(nic: NicRef<'_>, address: &str) -> Result<NicReport, NicError> {
    let addr: Ipv4Addr = address
        .split('/')
        .next()
        .unwrap_or_default()
        .parse()
        .map_err(|e| NicError::BadInput {
            what: "address",
            detail: format!("{address:?}: {e}"),
        })?;
    let asked = nic.to_string();
    let mut rtnl = Rtnl::open().map_err(rt(&asked))?;
    let link = link::resolve(&mut rtnl, nic).map_err(rt(&asked))?;
    let nic = link.name.as_str();
    let held = ops::addresses(&mut rtnl, link.index).map_err(rt(nic))?;
    if !held.iter().any(|c| c.addr == addr) {
        return Err(NicError::BadInput {
            what: "address",
            detail: format!("{addr} is not an address of {nic}"),
        });
    }
    let port = free_port(addr).map_err(|e| NicError::BadInput {
        what: "address",
        detail: format!("no free TCP port on {addr}: {e}"),
    })?;
    let endpoint = NewEndpoint::new(IpAddr::V4(addr), EndpointFlags::SIGNAL)
        .with_ifindex(link.index)
        .with_port(port);
    let id = MptcpPm::open()
        .and_then(|mut pm| pm.add_endpoint(&endpoint))
        .map_err(pm(nic))?;
    Ok(NicReport {
        nic: nic.to_owned(),
        mac: link.mac,
        addresses: current_addresses(&mut rtnl, link.index).map_err(rt(nic))?,
        endpoints: vec![id],
    })
}

/// A TCP port free on `addr` now (the kernel's pick for a bind to port 0;
/// the socket is closed before the path manager binds the port).
fn free_port(addr: Ipv4Addr) -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind((addr, 0))?.local_addr()?.port())
}

fn current_addresses(rtnl: &mut Rtnl, index: u32) -> Result<Vec<String>, RtnlError> {
    Ok(ops::addresses(rtnl, index)?
        .iter()
        .map(Cidr::to_string)
        .collect())
}

/// Retires `nic` (by MAC when given, else by name): MPTCP endpoints of
/// its addresses (and id 0, closing the initial subflows on them), policy
/// rules, its table and main-table routes, its addresses; then sets it
/// down. The report names the real interface.
pub fn nic_retire(nic: NicRef<'_>) -> Result<NicReport, NicError> {
    let asked = nic.to_string();
    let mut rtnl = Rtnl::open().map_err(rt(&asked))?;
    let link = link::resolve(&mut rtnl, nic).map_err(rt(&asked))?;
    let nic = link.name.as_str();
    let index = link.index;
    let table = table_of(index);
    let addrs = ops::addresses(&mut rtnl, index).map_err(rt(nic))?;

    let removed = remove_endpoints(&addrs).map_err(pm(nic))?;

    let gone = [libc::ENOENT, libc::ESRCH, libc::EADDRNOTAVAIL];
    for rule in ops::rules(&mut rtnl).map_err(rt(nic))? {
        let ours = rule
            .src
            .is_some_and(|s| addrs.iter().any(|c| IpAddr::V4(c.addr) == s))
            || (rule.priority == Some(priority_of(index)) && rule.table == table);
        if ours {
            tolerate(ops::del_rule(&mut rtnl, &rule), &gone).map_err(rt(nic))?;
        }
    }
    for cidr in &addrs {
        tolerate(ops::del_address(&mut rtnl, index, *cidr), &gone).map_err(rt(nic))?;
    }
    for route in ops::routes(&mut rtnl).map_err(rt(nic))? {
        if route.table == table || (route.table == MAIN_TABLE && route.oif == Some(index)) {
            tolerate(ops::del_route(&mut rtnl, &route), &gone).map_err(rt(nic))?;
        }
    }
    ops::set_link_up(&mut rtnl, index, false).map_err(rt(nic))?;
    Ok(NicReport {
        nic: nic.to_owned(),
        mac: link.mac,
        addresses: current_addresses(&mut rtnl, index).map_err(rt(nic))?,
        endpoints: removed,
    })
}

/// Deletes the endpoints of `addrs` and their id-0 subflows; returns the
/// ids deleted.
fn remove_endpoints(addrs: &[Cidr]) -> Result<Vec<u8>, PmError> {
    let mut pm = MptcpPm::open()?;
    let endpoints = pm.endpoints()?;
    let mut removed = Vec::new();
    for cidr in addrs {
        let addr = IpAddr::V4(cidr.addr);
        for ep in endpoints.iter().filter(|e| e.addr == addr) {
            match pm.delete_endpoint(ep.id, Some(addr)) {
                Ok(()) => removed.push(ep.id),
                Err(e) if e.errno() == Some(libc::ENOENT) || e.errno() == Some(libc::EINVAL) => {}
                Err(e) => return Err(e),
            }
        }
        // Id 0 is the initial subflow's address: this closes the initial
        // subflows bound to `addr` (absent ones are not an error).
        if let Err(e) = pm.delete_endpoint(0, Some(addr))
            && !matches!(e.errno(), Some(libc::ENOENT | libc::EINVAL))
        {
            return Err(e);
        }
    }
    Ok(removed)
}
