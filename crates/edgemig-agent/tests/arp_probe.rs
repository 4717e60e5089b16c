//! ARP duplicate-address probes against a real kernel: a bridge in one
//! namespace, a host holding an address in another, joined by a veth.

use std::net::Ipv4Addr;
use std::time::Duration;

use edgemig_agent::arp_probe;
use edgemig_testkit::{NetNs, unique_prefix};

fn ip(ns: &NetNs, args: &[&str]) {
    ns.exec(&[&["ip"][..], args].concat());
}

#[test]
fn a_host_holding_the_address_is_found_and_a_free_address_is_not() {
    let prefix = unique_prefix();
    let site = NetNs::new(&format!("{prefix}s"));
    let host = NetNs::new(&format!("{prefix}h"));
    ip(&site, &["link", "add", "br0", "type", "bridge"]);
    ip(&site, &["addr", "add", "10.99.0.1/24", "dev", "br0"]);
    ip(&site, &["link", "set", "br0", "up"]);
    ip(
        &host,
        &[
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "name",
            "port0",
            "netns",
            site.name(),
        ],
    );
    ip(&host, &["addr", "add", "10.99.0.2/24", "dev", "eth0"]);
    ip(&host, &["link", "set", "eth0", "up"]);
    ip(&site, &["link", "set", "port0", "master", "br0", "up"]);
    let mac = host.exec(&["cat", "/sys/class/net/eth0/address"]);

    let probe = |target: Ipv4Addr| {
        edgemig_netns::in_netns(site.name(), move || {
            arp_probe::probe("br0", target, 3, Duration::from_millis(300))
        })
        .expect("enter the site namespace")
        .expect("probe")
    };
    let taken = probe(Ipv4Addr::new(10, 99, 0, 2));
    assert_eq!(taken.map(|t| t.mac), Some(mac.trim().to_string()));
    assert_eq!(probe(Ipv4Addr::new(10, 99, 0, 3)), None);
}
