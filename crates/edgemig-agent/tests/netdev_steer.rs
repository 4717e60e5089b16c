//! Steering and pinning a MAC address to a port of a bridge, against a real
//! kernel: the VM network's bridge in one namespace, the paused copy of a
//! VM (which no longer answers) at one port, the copy that runs next at
//! another, both with the same MAC and address, as around a switchover.

use edgemig_agent::netdev::{Netdev, parse_mac};
use edgemig_testkit::{NetNs, unique_prefix};

const VM_IP: &str = "10.98.0.2";

fn ip(ns: &NetNs, args: &[&str]) {
    ns.exec(&[&["ip"][..], args].concat());
}

/// A host `ns` with `eth0` (MAC `mac`, address [`VM_IP`]) whose peer
/// `port` is a port of `br0` in `site`.
fn host_at_port(site: &NetNs, ns: &NetNs, port: &str, mac: &str) {
    ip(
        ns,
        &[
            "link",
            "add",
            "eth0",
            "address",
            mac,
            "type",
            "veth",
            "peer",
            "name",
            port,
            "netns",
            site.name(),
        ],
    );
    // Quiet: no IPv6 chatter that would teach the bridge the MAC.
    ns.exec(&["sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1"]);
    ns.exec(&["sysctl", "-q", "-w", "net.ipv6.conf.eth0.disable_ipv6=1"]);
    ip(ns, &["addr", "add", &format!("{VM_IP}/24"), "dev", "eth0"]);
    ip(
        ns,
        &[
            "neigh",
            "replace",
            "10.98.0.1",
            "lladdr",
            "02:ed:0a:62:00:01",
            "dev",
            "eth0",
            "nud",
            "permanent",
        ],
    );
    ip(site, &["link", "set", port, "master", "br0", "up"]);
}

/// Whether the site reaches the VM's address (one busybox ping, 2 s).
fn answered(site: &NetNs) -> bool {
    std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            site.name(),
            "busybox",
            "ping",
            "-c",
            "1",
            "-W",
            "2",
            VM_IP,
        ])
        .output()
        .expect("run ping")
        .status
        .success()
}

/// The bridge ports holding a forwarding entry of `mac`.
fn ports_of(site: &NetNs, mac: &str) -> Vec<String> {
    let out = site.exec(&["bridge", "-j", "fdb", "show", "br", "br0"]);
    let entries: serde_json::Value = serde_json::from_str(&out).expect("bridge -j output");
    entries
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["mac"] == mac && e["master"] == "br0")
        .filter_map(|e| e["ifname"].as_str().map(str::to_string))
        .collect()
}

/// Runs `f` with a netlink handle inside the site's namespace.
fn netdev_in<T: Send, F: Future<Output = T>>(
    site: &NetNs,
    f: impl FnOnce(Netdev) -> F + Send,
) -> T {
    edgemig_netns::in_netns(site.name(), move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move { f(Netdev::connect().expect("netlink")).await })
    })
    .expect("enter the site namespace")
}

/// The site's bridge with the two copies of the VM at `port0` and `port1`.
fn site_with_two_copies(prefix: &str, mac: &str) -> (NetNs, NetNs, NetNs) {
    let site = NetNs::new(&format!("{prefix}s"));
    let paused = NetNs::new(&format!("{prefix}o"));
    let next = NetNs::new(&format!("{prefix}n"));
    ip(
        &site,
        &[
            "link",
            "add",
            "br0",
            "address",
            "02:ed:0a:62:00:01",
            "type",
            "bridge",
        ],
    );
    ip(&site, &["addr", "add", "10.98.0.1/24", "dev", "br0"]);
    ip(&site, &["link", "set", "br0", "up"]);
    host_at_port(&site, &paused, "port0", mac);
    host_at_port(&site, &next, "port1", mac);
    ip(
        &site,
        &[
            "neigh",
            "replace",
            VM_IP,
            "lladdr",
            mac,
            "dev",
            "br0",
            "nud",
            "permanent",
        ],
    );
    (site, paused, next)
}

#[test]
fn a_pinned_mac_stays_at_its_port_whatever_arrives_elsewhere() {
    let mac = "52:54:01:aa:bb:cd";
    let (site, paused, next) = site_with_two_copies(&unique_prefix(), mac);
    ip(&next, &["link", "set", "eth0", "up"]);
    let bytes = parse_mac(mac).expect("mac");
    netdev_in(&site, move |n| async move { n.pin("port1", bytes).await }).expect("pin");
    assert_eq!(ports_of(&site, mac), vec!["port1"]);
    // The other copy sends from the other port: the bridge keeps the pin.
    ip(&paused, &["link", "set", "eth0", "up"]);
    let _ = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            paused.name(),
            "busybox",
            "ping",
            "-c",
            "2",
            "-W",
            "1",
            "10.98.0.1",
        ])
        .output();
    assert_eq!(ports_of(&site, mac), vec!["port1"], "the pin held");
    ip(&paused, &["addr", "flush", "dev", "eth0"]);
    assert!(answered(&site), "frames for the MAC reach the pinned port");
}

#[test]
fn a_steered_mac_leaves_by_its_new_port_until_unsteered() {
    let mac = "52:54:01:aa:bb:cc";
    let (site, paused, next) = site_with_two_copies(&unique_prefix(), mac);
    // The bridge learns the MAC at the first port; then that copy stops
    // answering (its link stays up, as a paused QEMU's TAP does) and the
    // next one comes up, silent until spoken to.
    ip(&paused, &["link", "set", "eth0", "up"]);
    assert!(answered(&site), "the first copy answers");
    assert_eq!(ports_of(&site, mac), vec!["port0"]);
    ip(&paused, &["addr", "flush", "dev", "eth0"]);
    ip(&next, &["link", "set", "eth0", "up"]);
    assert!(!answered(&site), "frames go to the silent copy");

    let bytes = parse_mac(mac).expect("mac");
    netdev_in(&site, move |n| async move { n.steer("port1", bytes).await }).expect("steer");
    assert_eq!(ports_of(&site, mac), vec!["port1"]);
    assert!(answered(&site), "steered, frames reach the next copy");

    netdev_in(&site, move |n| async move {
        n.unsteer("port1", bytes).await.expect("unsteer");
        // Twice: an entry already gone is no error.
        n.unsteer("port1", bytes).await
    })
    .expect("unsteer again");
    assert!(
        !ports_of(&site, mac).contains(&"port1".to_string()),
        "the entry is gone"
    );
    let missing = netdev_in(
        &site,
        move |n| async move { n.steer("nosuch0", bytes).await },
    );
    assert!(missing.is_err(), "a port that does not exist is an error");
}
