//! The topology a config asks for: namespace names, interface names and
//! addresses, routes. Derived without I/O so it can be checked in tests and
//! written to the testbed's state file.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::config::{LinkShape, TestbedConfig};

/// One end of a point-to-point link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkEnd {
    /// Node (site or client) name.
    pub node: String,
    /// Namespace of the node.
    pub netns: String,
    /// Interface name in that namespace (at most 15 characters).
    pub ifname: String,
    /// Address with prefix.
    pub addr: Ipv4Net,
}

/// A site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SitePlan {
    /// Site name.
    pub name: String,
    /// Its namespace.
    pub netns: String,
    /// Bridge of its VM network.
    pub bridge: String,
    /// VM subnet.
    pub vm_subnet: Ipv4Net,
    /// Gateway on the bridge (first host).
    pub gateway: Ipv4Addr,
}

/// A WAN path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPlan {
    /// `path1`, `path2`, ... in config order.
    pub name: String,
    /// First site's end.
    pub a: LinkEnd,
    /// Second site's end.
    pub b: LinkEnd,
    /// Shape.
    pub shape: LinkShape,
}

/// A client's access link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessPlan {
    /// `<client>-<site>`.
    pub name: String,
    /// Client end.
    pub client: LinkEnd,
    /// Site end.
    pub site: LinkEnd,
    /// The site's VM subnet, routed through this link from the client.
    pub vm_subnet: Ipv4Net,
    /// Shape.
    pub shape: LinkShape,
}

/// A client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientPlan {
    /// Name.
    pub name: String,
    /// Namespace.
    pub netns: String,
    /// Access links.
    pub links: Vec<AccessPlan>,
}

/// The whole topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Testbed name; prefix of every namespace.
    pub name: String,
    /// Sites.
    pub sites: Vec<SitePlan>,
    /// Paths.
    pub paths: Vec<PathPlan>,
    /// Clients.
    pub clients: Vec<ClientPlan>,
}

/// Whether `name` can name a testbed: 1–12 of `[a-z0-9-]`, starting with a letter.
pub fn valid_testbed_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 12
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// Namespace of `node` in testbed `testbed`. Node and testbed names never
/// contain `_`, so `<testbed>_` prefixes exactly one testbed's namespaces.
pub fn netns_name(testbed: &str, node: &str) -> String {
    format!("{testbed}_{node}")
}

fn net(a: u8, b: u8, c: u8, host: u8) -> Ipv4Net {
    Ipv4Net::new(Ipv4Addr::new(a, b, c, host), 24).unwrap_or_default()
}

/// The plan for `config` under testbed `name` (validated config assumed:
/// at most 200 paths and 200 access links).
pub fn plan(name: &str, config: &TestbedConfig) -> Plan {
    let netns = |node: &str| netns_name(name, node);
    let sites: Vec<SitePlan> = config
        .sites
        .iter()
        .map(|s| SitePlan {
            name: s.name.clone(),
            netns: netns(&s.name),
            bridge: "vmbr0".into(),
            vm_subnet: s.vm_subnet,
            gateway: s.vm_subnet.hosts().next().unwrap_or(s.vm_subnet.network()),
        })
        .collect();
    let paths = config
        .paths
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let n = u8::try_from(i + 1).unwrap_or(u8::MAX);
            let end = |node: &str, host| LinkEnd {
                node: node.to_string(),
                netns: netns(node),
                ifname: format!("p{n}"),
                addr: net(172, 31, n, host),
            };
            PathPlan {
                name: format!("path{n}"),
                a: end(&p.between[0], 1),
                b: end(&p.between[1], 2),
                shape: p.shape.clone(),
            }
        })
        .collect();
    let mut k = 0u8;
    let clients = config
        .clients
        .iter()
        .map(|c| ClientPlan {
            name: c.name.clone(),
            netns: netns(&c.name),
            links: c
                .links
                .iter()
                .enumerate()
                .map(|(j, l)| {
                    k = k.saturating_add(1);
                    let vm_subnet = sites
                        .iter()
                        .find(|s| s.name == l.site)
                        .map(|s| s.vm_subnet)
                        .unwrap_or_default();
                    AccessPlan {
                        name: format!("{}-{}", c.name, l.site),
                        client: LinkEnd {
                            node: c.name.clone(),
                            netns: netns(&c.name),
                            ifname: format!("a{}", j + 1),
                            addr: net(172, 30, k, 2),
                        },
                        site: LinkEnd {
                            node: l.site.clone(),
                            netns: netns(&l.site),
                            ifname: format!("c{k}"),
                            addr: net(172, 30, k, 1),
                        },
                        vm_subnet,
                        shape: l.shape.clone(),
                    }
                })
                .collect(),
        })
        .collect();
    Plan {
        name: name.to_string(),
        sites,
        paths,
        clients,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_plan_has_distinct_addresses_and_short_names() {
        let p = plan("tb1", &TestbedConfig::default_config());
        assert_eq!(p.sites[0].netns, "tb1_site-a");
        assert_eq!(p.sites[1].gateway, Ipv4Addr::new(10, 20, 0, 1));
        assert_eq!(p.paths.len(), 2);
        assert_eq!(p.paths[1].a.addr.to_string(), "172.31.2.1/24");
        assert_eq!(p.paths[1].b.addr.to_string(), "172.31.2.2/24");
        let alice = &p.clients[0];
        assert_eq!(alice.links[1].client.addr.to_string(), "172.30.2.2/24");
        assert_eq!(alice.links[1].site.ifname, "c2");
        assert_eq!(alice.links[1].vm_subnet.to_string(), "10.20.0.0/24");
        let mut addrs: Vec<_> = p.paths.iter().flat_map(|x| [x.a.addr, x.b.addr]).collect();
        addrs.extend(
            alice
                .links
                .iter()
                .flat_map(|l| [l.client.addr, l.site.addr]),
        );
        let n = addrs.len();
        addrs.sort();
        addrs.dedup();
        assert_eq!(addrs.len(), n, "addresses must be unique");
        let all_ifnames = p.paths.iter().flat_map(|x| [&x.a.ifname, &x.b.ifname]);
        assert!(all_ifnames.into_iter().all(|n| n.len() <= 15));
    }

    #[test]
    fn testbed_names() {
        assert!(valid_testbed_name("edgemig"));
        assert!(!valid_testbed_name("A"));
        assert!(!valid_testbed_name("much-too-long-name"));
    }
}
