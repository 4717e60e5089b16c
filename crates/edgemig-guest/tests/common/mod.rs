//! Throwaway network namespaces for the networking tests (root needed;
//! the tests skip otherwise): unique names per run (`emgn<pid>-<n>`),
//! deleted on drop even when a test fails, and `ip` helpers.

#![allow(dead_code)]

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use edgemig_guest::net::nic;
use edgemig_netns::in_netns;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A named namespace, deleted (with its veths and endpoints) on drop.
pub struct Ns(pub String);

impl Ns {
    pub fn new() -> Self {
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
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.0.as_str()];
        all.extend_from_slice(args);
        run(&all)
    }

    /// Veth `name` with peer `name`p (the peer up).
    pub fn veth(&self, name: &str) {
        self.veth_down(name);
        self.ip(&["link", "set", &format!("{name}p"), "up"]);
    }

    /// Veth `name` with peer `name`p, both down: `name` has no carrier
    /// until the peer goes up.
    pub fn veth_down(&self, name: &str) {
        let peer = format!("{name}p");
        self.ip(&["link", "add", name, "type", "veth", "peer", "name", &peer]);
    }

    /// Runs `f` on a thread inside the namespace.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        in_netns(&self.0, f).expect("enter namespace")
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// A veth pair `guest_dev` in `guest` and `client_dev` in `client`, both
/// up with `.2` (guest) and `.1` (client) of `net`.0/24.
pub fn link(guest: &Ns, guest_dev: &str, client: &Ns, client_dev: &str, net: &str) {
    guest.ip(&[
        "link", "add", guest_dev, "type", "veth", "peer", "name", client_dev, "netns", &client.0,
    ]);
    guest.ip(&["addr", "add", &format!("{net}.2/24"), "dev", guest_dev]);
    guest.ip(&["link", "set", guest_dev, "up"]);
    client.ip(&["addr", "add", &format!("{net}.1/24"), "dev", client_dev]);
    client.ip(&["link", "set", client_dev, "up"]);
}

/// `ip args...`, which must succeed; its stdout.
pub fn run(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("skipped: needs root");
    }
    root
}

pub fn ifindex(ns: &Ns, dev: &str) -> u32 {
    let out = ns.ip(&["-o", "link", "show", "dev", dev]);
    out.split(':').next().unwrap().trim().parse().unwrap()
}

/// The flags of `dev` (`UP`, `LOWER_UP`, ...).
pub fn link_flags(ns: &Ns, dev: &str) -> Vec<String> {
    let link = ns.ip(&["-o", "link", "show", "dev", dev]);
    let flags = link.split(['<', '>']).nth(1).unwrap_or_default();
    flags.split(',').map(str::to_owned).collect()
}

pub fn lines_with(text: &str, needle: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

/// Checks the policy routing of `dev` with `addr`: its table's default
/// route via `gw` and its connected route, and the rule for `addr`.
pub fn assert_policy(ns: &Ns, dev: &str, addr: &str, gw: &str) {
    let idx = ifindex(ns, dev);
    let table = nic::table_of(idx).to_string();
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
}

/// Checks the state left by NicUp for `dev` with `addr`/24 via `gw`.
pub fn assert_up(ns: &Ns, dev: &str, addr: &str, gw: &str) {
    let addrs = ns.ip(&["-4", "addr", "show", "dev", dev]);
    assert!(addrs.contains(&format!("inet {addr}/24")), "{addrs}");
    assert_policy(ns, dev, addr, gw);
    let eps = ns.ip(&["mptcp", "endpoint", "show"]);
    let ep = lines_with(&eps, &format!("{addr} "));
    assert_eq!(ep.len(), 1, "{eps}");
    assert!(
        ep[0].contains("signal") && ep[0].contains(&format!("dev {dev}")),
        "{eps}"
    );
}

pub fn main_defaults(ns: &Ns) -> Vec<String> {
    lines_with(&ns.ip(&["-4", "route", "show", "table", "main"]), "default")
}

/// Everything NicUp/NicRetire/plans touch, as `ip` prints it.
pub fn snapshot(ns: &Ns) -> String {
    [
        &["-4", "addr", "show"][..],
        &["-4", "rule", "show"],
        &["-4", "route", "show", "table", "all"],
        &["mptcp", "endpoint", "show"],
    ]
    .iter()
    .map(|args| format!("ip {args:?}:\n{}", ns.ip(args)))
    .collect()
}
