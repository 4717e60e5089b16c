//! Test helpers for edgemig's black-box tests: unique names per run,
//! network namespaces and agents that remove everything they created on
//! drop (also when the test fails), and readiness polling.

mod agent;
mod client;
mod mount;
mod netns;
mod paths;
mod testbed;
mod topology;
mod wait;

pub use agent::TestAgent;
pub use client::TrafficClient;
pub use mount::SmallTmpfs;
pub use netns::{NetNs, exists as netns_exists};
pub use paths::{guest_image_dir, workspace_target};
pub use testbed::TestTestbed;
pub use topology::two_sites;
pub use wait::wait_until;

use std::sync::atomic::{AtomicU32, Ordering};

/// A short name unique to this process and call, usable in interface and
/// namespace names (`emt<pid36><n>`, at most 12 characters).
pub fn unique_prefix() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("emt{}{}", base36(std::process::id()), base36(n))
}

fn base36(mut n: u32) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// Sends `signal` to `pid` (a process the test started).
pub fn kill(pid: u32, signal: i32) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) takes plain integers and has no memory effects.
        unsafe { libc::kill(pid, signal) };
    }
}

/// Whether `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| r.trim_start().starts_with(['Z', 'X']))
        })
        .is_some_and(|dead| !dead)
}

/// Makes `dir` (a fresh temporary directory, mode 0700) traversable by
/// QEMU's unprivileged user, which an agent under it needs.
pub fn open_to_qemu(dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
        .expect("chmod a test directory");
}

#[cfg(test)]
mod tests {
    #[test]
    fn prefixes_are_unique_and_short() {
        let a = super::unique_prefix();
        let b = super::unique_prefix();
        assert_ne!(a, b);
        assert!(a.len() <= 12, "{a}");
    }
}
