//! busybox's DHCP client against the server on a real bridge, across
//! network namespaces (root needed): the client gets exactly its lease,
//! an unknown MAC gets nothing, table changes apply to the next client
//! run and to renewals.

mod common;

use common::udhcpc::{Event, Udhcpc};
use common::{GATEWAY, Site, lease, mac};
use edgemig_dhcp::{Lease, LeaseTime};

/// Few retries, one second apart: enough on a bridge that answers at
/// once, short when nothing answers.
const QUICK: [&str; 4] = ["-t", "3", "-T", "1"];

fn bound(events: &[Event]) -> Option<&Event> {
    events.iter().find(|e| e.kind == "bound")
}

#[test]
fn client_gets_exactly_its_lease() {
    let site = Site::with_server();
    site.leases.insert(mac(), lease(23));
    let (status, events) = Udhcpc::run(&site, "first", &QUICK);
    assert!(status.success(), "udhcpc failed: {events:?}");
    let got = bound(&events).expect("a bound event");
    assert_eq!(got.get("ip"), "10.99.0.23");
    assert_eq!(got.get("subnet"), "255.255.255.0");
    assert_eq!(got.get("mask"), "24");
    assert_eq!(got.get("router"), "10.99.0.1");
    assert_eq!(got.get("serverid"), GATEWAY.to_string());
    assert_eq!(got.get("lease"), "600");
    assert_eq!(got.get("dns"), "");
    let stats = site.stats();
    assert!(stats.offers >= 1 && stats.acks >= 1, "{stats:?}");
    assert_eq!(stats.naks, 0);
}

#[test]
fn unknown_mac_gets_nothing() {
    let site = Site::with_server();
    // A lease for another MAC only.
    site.leases
        .insert("52:54:00:99:00:02".parse().unwrap(), lease(23));
    let (status, events) = Udhcpc::run(&site, "unknown", &QUICK);
    assert!(!status.success(), "udhcpc got a lease: {events:?}");
    assert!(bound(&events).is_none(), "{events:?}");
    let stats = site.stats();
    // The server did hear the client, and stayed silent.
    assert!(stats.unknown_mac >= 1, "{stats:?}");
    assert_eq!((stats.offers, stats.acks), (0, 0), "{stats:?}");
}

#[test]
fn the_next_run_gets_the_changed_lease() {
    let site = Site::with_server();
    site.leases.insert(mac(), lease(23));
    let (status, events) = Udhcpc::run(&site, "before", &QUICK);
    assert!(status.success(), "{events:?}");
    assert_eq!(bound(&events).map(|e| e.get("ip")), Some("10.99.0.23"));

    // The agent changes the VM's lease: new address, narrower network,
    // longer lease, a DNS server.
    let changed = Lease::new("10.99.0.50".parse().unwrap(), 26, GATEWAY)
        .unwrap()
        .with_lease_time(LeaseTime::from_secs(1800).unwrap())
        .with_dns(vec![GATEWAY])
        .unwrap();
    site.leases.insert(mac(), changed);
    let (status, events) = Udhcpc::run(&site, "after", &QUICK);
    assert!(status.success(), "{events:?}");
    let got = bound(&events).expect("a bound event");
    assert_eq!(got.get("ip"), "10.99.0.50");
    assert_eq!(got.get("subnet"), "255.255.255.192");
    assert_eq!(got.get("router"), "10.99.0.1");
    assert_eq!(got.get("lease"), "1800");
    assert_eq!(got.get("dns"), "10.99.0.1");

    // The agent removes it (the VM left for good): no more answers.
    site.leases.remove(&mac());
    let (status, events) = Udhcpc::run(&site, "removed", &QUICK);
    assert!(!status.success(), "{events:?}");
}

#[test]
fn a_requested_address_gives_the_static_one() {
    let site = Site::with_server();
    site.leases.insert(mac(), lease(23));
    // Asking again for the address it had (a reboot) works ...
    let mut args = vec!["-r", "10.99.0.23"];
    args.extend(QUICK);
    let (status, events) = Udhcpc::run(&site, "same", &args);
    assert!(status.success(), "{events:?}");
    assert_eq!(bound(&events).map(|e| e.get("ip")), Some("10.99.0.23"));
    // ... and asking for another one still gives the VM's own.
    let mut args = vec!["-r", "10.99.0.77"];
    args.extend(QUICK);
    let (status, events) = Udhcpc::run(&site, "other", &args);
    assert!(status.success(), "{events:?}");
    assert_eq!(bound(&events).map(|e| e.get("ip")), Some("10.99.0.23"));
}

#[test]
fn renewal_is_acked_and_a_changed_lease_is_picked_up() {
    let site = Site::with_server();
    site.leases.insert(mac(), lease(23));
    // A long-running client that configures its address like a real one.
    let client = Udhcpc::spawn(&site, "renew", &QUICK, true);
    client.wait_for("bound to .23", |e| {
        e.kind == "bound" && e.get("ip") == "10.99.0.23"
    });
    let addrs = site
        .client
        .exec(&["ip", "-4", "-o", "addr", "show", "dev", &site.client_if]);
    assert!(addrs.contains("10.99.0.23/24"), "{addrs}");

    // SIGUSR1: renew now (a DHCPREQUEST from ciaddr, by unicast).
    let acks = site.stats().acks;
    edgemig_testkit::kill(client.pid(), libc::SIGUSR1);
    let renewed = client.wait_for("renew", |e| e.kind == "renew");
    assert_eq!(renewed.get("ip"), "10.99.0.23");
    assert_eq!(renewed.get("lease"), "600");
    assert!(site.stats().acks > acks);

    // The agent moves the VM to another address: the next renewal is
    // refused and the client starts over with the new lease.
    site.leases.insert(mac(), lease(42));
    edgemig_testkit::kill(client.pid(), libc::SIGUSR1);
    client.wait_for("NAK", |e| e.kind == "nak");
    client.wait_for("bound to .42", |e| {
        e.kind == "bound" && e.get("ip") == "10.99.0.42"
    });
    assert!(site.stats().naks >= 1);
    let addrs = site
        .client
        .exec(&["ip", "-4", "-o", "addr", "show", "dev", &site.client_if]);
    assert!(addrs.contains("10.99.0.42/24"), "{addrs}");
}
