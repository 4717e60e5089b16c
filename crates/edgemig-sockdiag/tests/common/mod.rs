//! A fresh network namespace per test (`emsd<pid>-<n>`, loopback up),
//! deleted by a drop guard even when the test fails.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique name for this run and test.
pub fn unique_name() -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("emsd{}-{n}", std::process::id())
}

/// A named network namespace with `lo` up; deleted on drop.
pub struct TestNs {
    pub name: String,
}

impl TestNs {
    pub fn new() -> Self {
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        assert_eq!(euid, 0, "these tests need root (network namespaces)");
        let name = unique_name();
        edgemig_netns::create(&name).expect("create namespace");
        let ns = Self { name };
        let out = Command::new("ip")
            .args(["-n", &ns.name, "link", "set", "lo", "up"])
            .output()
            .expect("run ip");
        assert!(
            out.status.success(),
            "ip link set lo up: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        ns
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        let _ = edgemig_netns::delete(&self.name);
    }
}
