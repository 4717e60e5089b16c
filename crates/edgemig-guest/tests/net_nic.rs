//! NicUp / NicRetire / NetStatus against the real kernel, inside throwaway
//! network namespaces (root needed; skipped otherwise). Every netlink
//! result is cross-checked with `ip` output.

mod common;

use std::net::{TcpListener, TcpStream};

use common::{Ns, assert_up, ifindex, is_root, main_defaults, snapshot};
use edgemig_guest::net::{self, NicRef, nic};
use edgemig_mptcp::{EndpointFlags, MptcpPm};

#[test]
fn nic_up_retire_and_idempotence() {
    if !is_root() {
        return;
    }
    let ns = Ns::new();
    ns.veth("tg0");
    ns.veth("tg1");

    let rep = ns
        .run(|| net::nic_up(NicRef::name("tg0"), "10.10.0.5/24", "10.10.0.1"))
        .unwrap();
    assert_eq!(rep.nic, "tg0");
    assert_eq!(rep.addresses, vec!["10.10.0.5/24".to_string()]);
    assert_eq!(rep.endpoints.len(), 1);
    let ep0 = rep.endpoints[0];
    assert_up(&ns, "tg0", "10.10.0.5", "10.10.0.1");
    assert_eq!(
        main_defaults(&ns),
        vec!["default via 10.10.0.1 dev tg0 proto static "]
    );
    // Netlink's own view agrees with `ip`.
    let eps = ns.run(|| MptcpPm::open().unwrap().endpoints().unwrap());
    let e = eps.iter().find(|e| e.id == ep0).unwrap();
    assert_eq!(e.addr.to_string(), "10.10.0.5");
    assert!(e.flags.contains(EndpointFlags::SIGNAL));
    assert_eq!(e.ifindex, Some(ifindex(&ns, "tg0")));

    let rep = ns
        .run(|| net::nic_up(NicRef::name("tg1"), "10.20.0.5/24", "10.20.0.1"))
        .unwrap();
    assert_eq!(rep.addresses, vec!["10.20.0.5/24".to_string()]);
    let ep1 = rep.endpoints[0];
    assert_ne!(ep0, ep1);
    assert_up(&ns, "tg0", "10.10.0.5", "10.10.0.1");
    assert_up(&ns, "tg1", "10.20.0.5", "10.20.0.1");
    assert_eq!(
        main_defaults(&ns),
        vec!["default via 10.20.0.1 dev tg1 proto static "]
    );

    // Idempotent: same result, nothing duplicated.
    let again = ns
        .run(|| net::nic_up(NicRef::name("tg1"), "10.20.0.5/24", "10.20.0.1"))
        .unwrap();
    assert_eq!(again.endpoints, vec![ep1]);
    assert_up(&ns, "tg1", "10.20.0.5", "10.20.0.1");
    assert_eq!(main_defaults(&ns).len(), 1);

    let rep = ns.run(|| net::nic_retire(NicRef::name("tg0"))).unwrap();
    assert!(rep.addresses.is_empty(), "{rep:?}");
    assert_eq!(rep.endpoints, vec![ep0]);
    let addrs = ns.ip(&["-4", "addr", "show", "dev", "tg0"]);
    assert!(!addrs.contains("inet "), "{addrs}");
    let rules = ns.ip(&["-4", "rule", "show"]);
    assert!(!rules.contains("10.10.0.5"), "{rules}");
    assert!(rules.contains("from 10.20.0.5"), "{rules}");
    let eps = ns.ip(&["mptcp", "endpoint", "show"]);
    assert!(!eps.contains("10.10.0.5"), "{eps}");
    assert!(eps.contains("10.20.0.5"), "{eps}");
    let tg0_table = nic::table_of(ifindex(&ns, "tg0")).to_string();
    let routes = ns.ip(&["-4", "route", "show", "table", &tg0_table]);
    assert!(routes.trim().is_empty(), "{routes}");
    let link = ns.ip(&["-o", "link", "show", "dev", "tg0"]);
    let flags = link.split(['<', '>']).nth(1).unwrap();
    assert!(!flags.split(',').any(|f| f == "UP"), "{link}");
    assert_eq!(
        main_defaults(&ns),
        vec!["default via 10.20.0.1 dev tg1 proto static "]
    );
    let rep = ns.run(|| net::nic_retire(NicRef::name("tg0"))).unwrap();
    assert!(rep.endpoints.is_empty() && rep.addresses.is_empty());

    // Back up again after retirement.
    ns.run(|| net::nic_up(NicRef::name("tg0"), "10.10.0.5/24", "10.10.0.1"))
        .unwrap();
    assert_up(&ns, "tg0", "10.10.0.5", "10.10.0.1");
    assert_eq!(
        main_defaults(&ns),
        vec!["default via 10.10.0.1 dev tg0 proto static "]
    );

    eprintln!("{}", snapshot(&ns));

    // Bad input and unknown NIC are errors, not panics.
    assert!(
        ns.run(|| net::nic_up(NicRef::name("tg0"), "10.10.0.5", "10.10.0.1"))
            .is_err()
    );
    assert!(
        ns.run(|| net::nic_up(NicRef::name("tg0"), "10.10.0.5/24", "gw"))
            .is_err()
    );
    assert!(
        ns.run(|| net::nic_up(NicRef::name("nope0"), "10.30.0.5/24", "10.30.0.1"))
            .is_err()
    );
    assert!(ns.run(|| net::nic_retire(NicRef::name("nope0"))).is_err());
}

#[test]
fn net_status_counts_namespace_connections_not_loopback() {
    if !is_root() {
        return;
    }
    let ns = Ns::new();
    ns.veth("tg0");
    ns.ip(&["link", "set", "tg0", "up"]);
    ns.ip(&["addr", "add", "10.10.0.5/24", "dev", "tg0"]);
    let rep = ns.run(|| {
        let lo = TcpListener::bind("127.0.0.1:0").unwrap();
        let _lo_c = TcpStream::connect(lo.local_addr().unwrap()).unwrap();
        let _lo_s = lo.accept().unwrap();
        let l = TcpListener::bind("10.10.0.5:0").unwrap();
        let _c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let _s = l.accept().unwrap();
        net::net_status().unwrap()
    });
    // Both ends of the 10.10.0.5 connection are local.
    assert_eq!(rep.by_address, vec![("10.10.0.5".to_string(), 2)]);
}
