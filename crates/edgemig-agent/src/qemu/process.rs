//! Ending QEMU by pid, and the errors of starting it (`spawn.rs` starts
//! it). QEMU runs in a session of its own, so it outlives an agent restart
//! and the next agent re-attaches to it.

use std::path::PathBuf;
use std::time::Duration;

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
