//! NicUp / NicRetire / NetStatus against the real kernel, inside throwaway
//! network namespaces (root needed; skipped otherwise). Every netlink
//! result is cross-checked with `ip` output.

use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use edgemig_guest::net::{self, nic};
use edgemig_mptcp::{EndpointFlags, MptcpPm};
use edgemig_netns::in_netns;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A named namespace, deleted (with its veths and endpoints) on drop.
struct Ns(String);

impl Ns {
    fn new() -> Self {
        let name = format!(
            "emgn{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        run(&["netns", "add", &name]);
        let ns = Self(name);
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NS args...`, which must succeed; its stdout.
    fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.0.as_str()];
        all.extend_from_slice(args);
        run(&all)
    }

    /// Veth `name` with peer `name`p (up).
    fn veth(&self, name: &str) {
        let peer = format!("{name}p");
        self.ip(&["link", "add", name, "type", "veth", "peer", "name", &peer]);
        self.ip(&["link", "set", &peer, "up"]);
    }

    fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        in_netns(&self.0, f).expect("enter namespace")
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn run(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("skipped: needs root");
    }
    root
}

fn ifindex(ns: &Ns, dev: &str) -> u32 {
    let out = ns.ip(&["-o", "link", "show", "dev", dev]);
    out.split(':').next().unwrap().trim().parse().unwrap()
}

fn lines_with(text: &str, needle: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

/// Checks the state left by NicUp for `dev` with `addr`/24 via `gw`.
fn assert_up(ns: &Ns, dev: &str, addr: &str, gw: &str) {
    let idx = ifindex(ns, dev);
    let table = nic::table_of(idx).to_string();
    let addrs = ns.ip(&["-4", "addr", "show", "dev", dev]);
    assert!(addrs.contains(&format!("inet {addr}/24")), "{addrs}");
    let rules = ns.ip(&["-4", "rule", "show"]);
    let rule = format!("{}:\tfrom {addr} lookup {table}", nic::priority_of(idx));
    assert_eq!(lines_with(&rules, &rule).len(), 1, "{rules}");
    let routes = ns.ip(&["-4", "route", "show", "table", &table]);
    assert!(
        routes.contains(&format!("default via {gw} dev {dev}")),
        "{routes}"
    );
    assert!(
        routes.contains(&format!("dev {dev} proto static scope link src {addr}")),
        "{routes}"
    );
    let eps = ns.ip(&["mptcp", "endpoint", "show"]);
    let ep = lines_with(&eps, &format!("{addr} "));
    assert_eq!(ep.len(), 1, "{eps}");
    assert!(
        ep[0].contains("signal") && ep[0].contains(&format!("dev {dev}")),
        "{eps}"
    );
}

fn main_defaults(ns: &Ns) -> Vec<String> {
    lines_with(&ns.ip(&["-4", "route", "show", "table", "main"]), "default")
}

#[test]
fn nic_up_retire_and_idempotence() {
    if !is_root() {
        return;
    }
    let ns = Ns::new();
    ns.veth("tg0");
    ns.veth("tg1");

    let rep = ns
        .run(|| net::nic_up("tg0", "10.10.0.5/24", "10.10.0.1"))
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
        .run(|| net::nic_up("tg1", "10.20.0.5/24", "10.20.0.1"))
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
        .run(|| net::nic_up("tg1", "10.20.0.5/24", "10.20.0.1"))
        .unwrap();
    assert_eq!(again.endpoints, vec![ep1]);
    assert_up(&ns, "tg1", "10.20.0.5", "10.20.0.1");
    assert_eq!(main_defaults(&ns).len(), 1);

    let rep = ns.run(|| net::nic_retire("tg0")).unwrap();
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
    let rep = ns.run(|| net::nic_retire("tg0")).unwrap();
    assert!(rep.endpoints.is_empty() && rep.addresses.is_empty());

    // Back up again after retirement.
    ns.run(|| net::nic_up("tg0", "10.10.0.5/24", "10.10.0.1"))
        .unwrap();
    assert_up(&ns, "tg0", "10.10.0.5", "10.10.0.1");
    assert_eq!(
        main_defaults(&ns),
        vec!["default via 10.10.0.1 dev tg0 proto static "]
    );

    for args in [
        &["-4", "addr", "show"][..],
        &["-4", "rule", "show"],
        &["-4", "route", "show", "table", "all"],
        &["mptcp", "endpoint", "show"],
    ] {
        eprintln!("ip {args:?}:\n{}", ns.ip(args));
    }

    // Bad input and unknown NIC are errors, not panics.
    assert!(
        ns.run(|| net::nic_up("tg0", "10.10.0.5", "10.10.0.1"))
            .is_err()
    );
    assert!(ns.run(|| net::nic_up("tg0", "10.10.0.5/24", "gw")).is_err());
    assert!(
        ns.run(|| net::nic_up("nope0", "10.30.0.5/24", "10.30.0.1"))
            .is_err()
    );
    assert!(ns.run(|| net::nic_retire("nope0")).is_err());
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
