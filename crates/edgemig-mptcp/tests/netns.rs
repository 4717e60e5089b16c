//! Root-only tests against the real kernel path manager, each in a fresh
//! network namespace (`emmp<pid>-<n>`) that a drop guard removes, and
//! cross-checked against `ip mptcp` (iproute2).

use std::collections::BTreeSet;
use std::ffi::CString;
use std::net::IpAddr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use edgemig_mptcp::{EndpointFlags, Limits, MptcpPm, NewEndpoint, in_netns};

static COUNTER: AtomicU32 = AtomicU32::new(0);
const DEV: &str = "emmp0";

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A namespace with a veth pair whose end `emmp0` holds 10.252.0.1/24 and .2/24;
/// deleted on drop, even when the test panics.
struct TestNs(String);

impl TestNs {
    fn new() -> Option<Self> {
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        assert_eq!(
            euid, 0,
            "these tests need root (network namespaces); CI runs them as root"
        );
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("emmp{}-{n}", std::process::id());
        ip(&["netns", "add", &name]);
        let ns = TestNs(name);
        ns.ip(&["link", "add", DEV, "type", "veth", "peer", "name", "emmp1"]);
        ns.ip(&["addr", "add", "10.252.0.1/24", "dev", DEV]);
        ns.ip(&["addr", "add", "10.252.0.2/24", "dev", DEV]);
        ns.ip(&["link", "set", DEV, "up"]);
        ns.ip(&["link", "set", "emmp1", "up"]);
        Some(ns)
    }

    fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.0.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    fn ifindex(&self) -> u32 {
        in_netns(&self.0, || {
            let dev = CString::new(DEV).expect("name");
            // SAFETY: `dev` is a valid NUL-terminated string.
            unsafe { libc::if_nametoindex(dev.as_ptr()) }
        })
        .expect("in_netns")
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// `(addr, id, flags, dev)` from `ip mptcp endpoint show`.
fn ip_endpoints(ns: &TestNs) -> BTreeSet<(IpAddr, u8, String, Option<String>)> {
    ns.ip(&["mptcp", "endpoint", "show"])
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let t: Vec<&str> = line.split_whitespace().collect();
            let after = |key: &str| t.iter().position(|w| *w == key).map(|i| t[i + 1]);
            let flags: Vec<&str> = t
                .iter()
                .copied()
                .filter(|w| ["signal", "subflow", "backup", "fullmesh"].contains(w))
                .collect();
            (
                t[0].parse().expect("address"),
                after("id").expect("id").parse().expect("id number"),
                flags.join(" "),
                after("dev").map(str::to_owned),
            )
        })
        .collect()
}

#[test]
fn limits_and_endpoints_in_fresh_netns() {
    let Some(ns) = TestNs::new() else { return };
    let ifindex = ns.ifindex();
    let a1: IpAddr = "10.252.0.1".parse().unwrap();
    let a2: IpAddr = "10.252.0.2".parse().unwrap();

    let listed = in_netns(&ns.0, || {
        let mut pm = MptcpPm::open().expect("open");
        let limits = Limits {
            subflows: 4,
            add_addr_accepted: 4,
        };
        pm.set_limits(limits).expect("set limits");
        assert_eq!(pm.limits().expect("limits"), limits);

        assert!(pm.endpoints().expect("list").is_empty());
        let sub = pm
            .add_endpoint(&NewEndpoint::new(a1, EndpointFlags::SUBFLOW))
            .expect("add subflow");
        let sig = pm
            .add_endpoint(
                &NewEndpoint::new(a2, EndpointFlags::SIGNAL)
                    .with_ifindex(ifindex)
                    .with_id(42),
            )
            .expect("add signal");
        assert_eq!(sig, 42);
        assert_ne!(sub, 0);
        let eps = pm.endpoints().expect("list");
        assert_eq!(eps.len(), 2, "{eps:?}");
        let e1 = eps.iter().find(|e| e.id == sub).expect("subflow endpoint");
        assert_eq!(
            (e1.addr, e1.flags, e1.ifindex),
            (a1, EndpointFlags::SUBFLOW, None)
        );
        let e2 = eps.iter().find(|e| e.id == 42).expect("signal endpoint");
        assert_eq!(
            (e2.addr, e2.flags, e2.ifindex, e2.port),
            (a2, EndpointFlags::SIGNAL, Some(ifindex), None)
        );
        assert_eq!(pm.endpoint(42).expect("get by id"), *e2);
        (sub, eps)
    })
    .expect("in_netns");

    // Cross-check with iproute2 while both endpoints exist.
    let (sub, eps) = listed;
    assert_eq!(
        ns.ip(&["mptcp", "limits", "show"])
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["add_addr_accepted", "4", "subflows", "4"]
    );
    let ours: BTreeSet<_> = eps
        .iter()
        .map(|e| {
            let dev = e.ifindex.map(|_| DEV.to_owned());
            (e.addr, e.id, e.flags.to_string(), dev)
        })
        .collect();
    assert_eq!(ip_endpoints(&ns), ours);

    in_netns(&ns.0, || {
        let mut pm = MptcpPm::open().expect("open");
        pm.set_endpoint_flags(sub, None, EndpointFlags::BACKUP)
            .expect("set backup");
        assert_eq!(
            pm.endpoint(sub).expect("get").flags,
            EndpointFlags::SUBFLOW | EndpointFlags::BACKUP
        );
        pm.delete_endpoint(sub, None).expect("delete");
        let left = pm.endpoints().expect("list");
        assert_eq!(left.iter().map(|e| e.id).collect::<Vec<_>>(), [42]);
        pm.flush_endpoints().expect("flush");
        assert!(pm.endpoints().expect("list").is_empty());
    })
    .expect("in_netns");
    assert!(ip_endpoints(&ns).is_empty());
}

#[test]
fn kernel_errors_are_reported() {
    let Some(ns) = TestNs::new() else { return };
    in_netns(&ns.0, || {
        let mut pm = MptcpPm::open().expect("open");
        let before = pm.limits().expect("limits");
        let err = pm
            .set_limits(Limits {
                subflows: 9,
                add_addr_accepted: 1,
            })
            .expect_err("subflows above the kernel maximum");
        eprintln!("set_limits(9): {err}");
        assert_eq!(err.errno(), Some(libc::EINVAL), "{err}");
        let msg = err.kernel_message().expect("kernel extack message");
        assert!(!msg.is_empty());
        assert!(err.to_string().contains(msg), "{err}");
        assert_eq!(pm.limits().expect("limits"), before, "unchanged on error");

        let err = pm.delete_endpoint(77, None).expect_err("missing id");
        eprintln!("delete_endpoint(77): {err}");
        assert!(err.errno().is_some(), "{err}");
        let err = pm.endpoint(77).expect_err("missing id");
        assert!(err.errno().is_some(), "{err}");

        let a: IpAddr = "10.252.0.1".parse().unwrap();
        pm.add_endpoint(&NewEndpoint::new(a, EndpointFlags::SUBFLOW))
            .expect("add");
        let err = pm
            .add_endpoint(&NewEndpoint::new(a, EndpointFlags::SIGNAL))
            .expect_err("duplicate address");
        eprintln!("duplicate add: {err}");
        assert!(err.errno().is_some(), "{err}");
    })
    .expect("in_netns");
}

#[test]
fn unknown_netns_is_an_error() {
    assert!(in_netns("emmp-does-not-exist", || ()).is_err());
}
