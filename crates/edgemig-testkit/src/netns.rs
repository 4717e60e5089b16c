//! A network namespace that is deleted on drop.

use std::process::Command;

/// A network namespace created for one test.
#[derive(Debug)]
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Creates namespace `name` with loopback up.
    pub fn new(name: &str) -> Self {
        let status = Command::new("ip").args(["netns", "add", name]).status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "cannot create netns {name} (root and iproute2 needed)"
        );
        let ns = Self {
            name: name.to_string(),
        };
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs a command inside the namespace and returns its stdout; panics on failure.
    pub fn exec(&self, argv: &[&str]) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(argv)
            .output()
            .expect("run ip netns exec");
        assert!(
            out.status.success(),
            "{argv:?} in {} failed: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}

/// Whether a namespace called `name` exists.
pub fn exists(name: &str) -> bool {
    std::path::Path::new("/run/netns").join(name).exists()
}
