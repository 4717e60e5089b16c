//! Starting a daemonized QEMU and ending it by pid.
//!
//! QEMU runs with `-daemonize`: the launcher process exits once devices and
//! sockets exist (non-zero with a message on stderr when QEMU refused the
//! configuration), and the VM process is not a child of the agent, so it
//! outlives an agent restart and the agent re-attaches to it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
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
    /// No usable pid file after start.
    #[error("QEMU started but its pid file {path} is unreadable")]
    PidFile {
        /// The pid file.
        path: PathBuf,
    },
}

/// Starts QEMU and returns the pid of the daemonized VM process.
pub async fn launch(binary: &Path, args: &[OsString], pidfile: &Path) -> Result<u32, LaunchError> {
    let _ = std::fs::remove_file(pidfile);
    let output = tokio::process::Command::new(binary)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(false)
        .output()
        .await
        .map_err(|source| LaunchError::Spawn {
            binary: binary.to_path_buf(),
            source,
        })?;
    if !output.status.success() {
        return Err(LaunchError::Refused {
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    std::fs::read_to_string(pidfile)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| LaunchError::PidFile {
            path: pidfile.to_path_buf(),
        })
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
