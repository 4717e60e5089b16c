//! Finding and ending QEMU by pid, and the errors of starting it
//! (`spawn.rs` starts it). QEMU runs in a session of its own, so it
//! outlives an agent restart and the next agent re-attaches to it.

use std::path::PathBuf;
use std::time::Duration;

use super::cmdline::VmFiles;
use crate::host;

/// Errors while starting QEMU.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The binary could not be run.
    #[error("Cannot run {binary}")]
    Spawn {
        /// Binary tried.
        binary: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// QEMU refused to start.
    #[error("QEMU failed to start ({status}): {stderr}")]
    Refused {
        /// Exit status of the launcher.
        status: std::process::ExitStatus,
        /// What QEMU printed.
        stderr: String,
    },
}

/// Sends `signal` to `pid`.
pub fn kill(pid: u32, signal: i32) -> std::io::Result<()> {
    let pid =
        libc::pid_t::try_from(pid).map_err(|_| std::io::Error::from_raw_os_error(libc::ESRCH))?;
    // SAFETY: kill(2) takes plain integers and has no memory effects.
    let rc = unsafe { libc::kill(pid, signal) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Waits until `pid` is gone; false when it still runs after `timeout`.
pub async fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while host::process_alive(pid) {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

/// The QEMU running for the VM of `files`, found by the pid file QEMU
/// writes as it starts: for a QEMU whose pid no record holds yet (an agent
/// ended while it started one). The pid counts only while the process's
/// command line names the VM's own QMP socket, so a stale file whose pid
/// was reused by another process never names it.
pub fn running_from_pidfile(files: &VmFiles) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(files.pidfile())
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (host::process_alive(pid) && host::process_matches(pid, &files.qmp())).then_some(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pid_file_counts_only_for_a_process_naming_the_vms_socket() {
        let dir = tempfile::tempdir().unwrap();
        let files = VmFiles::new(dir.path().to_path_buf());
        assert_eq!(running_from_pidfile(&files), None, "no pid file");
        // This test's own process is alive but does not name the socket.
        std::fs::write(files.pidfile(), format!("{}\n", std::process::id())).unwrap();
        assert_eq!(running_from_pidfile(&files), None);
        std::fs::write(files.pidfile(), "not a pid").unwrap();
        assert_eq!(running_from_pidfile(&files), None);
        // A shell waiting on its own stdin (a builtin: no grandchild),
        // with the socket's path as its `$0`.
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg("read line")
            .arg(files.qmp())
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::fs::write(files.pidfile(), child.id().to_string()).unwrap();
        let found = running_from_pidfile(&files);
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(found, Some(child.id()));
        assert_eq!(running_from_pidfile(&files), None, "ended");
    }
}
