//! Starting QEMU contained, the way libvirt runs it: the agent opens what
//! needs privilege (the TAP devices) and hands the descriptors over, then
//! QEMU starts as an unprivileged user (set before `exec`) in a session of
//! its own, with its seccomp sandbox fully on (`-sandbox on,obsolete=deny,
//! elevateprivileges=deny,spawn=deny,resourcecontrol=deny`). QEMU's own
//! `-run-with user=` is not used: QEMU 10 installs its sandbox before it
//! drops privileges, so `elevateprivileges=deny` kills it at the
//! `setuid` ("Bad system call"); and `-daemonize` forks, which
//! `spawn=deny` forbids.
//!
//! QEMU is a child of the agent, reaped by a task; it runs on when the
//! agent ends (it is in its own session) and the next agent re-attaches.

use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use super::process::LaunchError;

/// First descriptor number handed to QEMU: the two TAP devices get 3 and
/// 4, the built-in guest's kernel and initramfs 5 and 6 (QEMU reads them as
/// `/proc/self/fd/N`, so their directories need not be reachable by its
/// user).
pub const FIRST_TAP_FD: i32 = 3;
/// Descriptor of the built-in guest's kernel in QEMU.
pub const KERNEL_FD: i32 = 5;
/// Descriptor of the built-in guest's initramfs in QEMU.
pub const INITRAMFS_FD: i32 = 6;
/// How long QEMU may take to create its QMP socket.
const READY_LIMIT: Duration = Duration::from_secs(30);

/// The sandbox argument.
pub const SANDBOX: &str = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny";

/// Who QEMU runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunAs {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// The first directory on the way to `path` (included) that `user` cannot
/// pass, if any.
pub fn unreachable_dir(path: &Path, user: RunAs) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let mut dir = std::path::PathBuf::new();
    for part in path.components() {
        dir.push(part);
        let Ok(meta) = std::fs::metadata(&dir) else {
            return Some(dir);
        };
        let mode = meta.mode();
        let passes = if meta.uid() == user.uid {
            mode & 0o100 != 0
        } else if meta.gid() == user.gid {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        };
        if !passes {
            return Some(dir);
        }
    }
    None
}

/// The device postcopy migration needs (QEMU opens it for its
/// userfaultfd, Linux 6.1 and later).
pub const USERFAULTFD_DEVICE: &str = "/dev/userfaultfd";

/// Why QEMU running as `user` (`None`: root) cannot do postcopy, if it
/// cannot: without `vm.unprivileged_userfaultfd`, an unprivileged process
/// needs read and write access to [`USERFAULTFD_DEVICE`] (the host package
/// and `scripts/setup.sh` give it to the QEMU user's group).
pub fn userfaultfd_refusal(user: Option<RunAs>) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let user = user?;
    if std::fs::read_to_string("/proc/sys/vm/unprivileged_userfaultfd")
        .is_ok_and(|v| v.trim() == "1")
    {
        return None;
    }
    let Ok(meta) = std::fs::metadata(USERFAULTFD_DEVICE) else {
        return Some(format!(
            "postcopy needs {USERFAULTFD_DEVICE} (Linux 6.1 or later), which this host lacks"
        ));
    };
    let mode = meta.mode();
    let rw = if meta.uid() == user.uid {
        mode & 0o600 == 0o600
    } else if meta.gid() == user.gid {
        mode & 0o060 == 0o060
    } else {
        mode & 0o006 == 0o006
    };
    (!rw).then(|| {
        format!(
            "postcopy needs QEMU's user (uid {}) to read and write {USERFAULTFD_DEVICE}: give its group access (the edgemig package's udev rule does; see docs/real-hosts.md)",
            user.uid
        )
    })
}

/// Looks up user `name`; `None` when it does not exist.
pub fn lookup_user(name: &str) -> Option<RunAs> {
    let c = std::ffi::CString::new(name).ok()?;
    let mut pwd = std::mem::MaybeUninit::<libc::passwd>::uninit();
    let mut buf = vec![0 as libc::c_char; 4096];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: getpwnam_r writes into `pwd` and `buf` (of the length given)
    // and sets `result` to `pwd` on success; all outlive the call.
    let rc = unsafe {
        libc::getpwnam_r(
            c.as_ptr(),
            pwd.as_mut_ptr(),
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return None;
    }
    // SAFETY: getpwnam_r succeeded and `result` points to `pwd`.
    let pwd = unsafe { pwd.assume_init() };
    Some(RunAs {
        uid: pwd.pw_uid,
        gid: pwd.pw_gid,
    })
}

/// Starts QEMU with `args` (which name the descriptors as `fd=3`, ...),
/// `fds` handed over as 3, 4, ... in that order, as `run_as`; its stderr
/// goes to `stderr_log`. Returns once its QMP socket `qmp` exists, with its
/// pid.
pub async fn spawn(
    binary: &Path,
    args: &[OsString],
    fds: Vec<OwnedFd>,
    run_as: Option<RunAs>,
    stderr_log: &Path,
    qmp: &Path,
) -> Result<u32, LaunchError> {
    let spawn_err = |source| LaunchError::Spawn {
        binary: binary.to_path_buf(),
        source,
    };
    let stderr = std::fs::File::create(stderr_log).map_err(spawn_err)?;
    if let Some(r) = run_as {
        let _ = std::os::unix::fs::chown(stderr_log, Some(r.uid), Some(r.gid));
    }
    let raw: Vec<i32> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    let mut cmd = tokio::process::Command::new(binary);
    cmd.args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .kill_on_drop(false);
    // SAFETY: the closure runs in the forked child before exec and makes
    // only async-signal-safe system calls (fcntl, dup2, setsid, setgroups,
    // setgid, setuid) on integers prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            let os = || std::io::Error::last_os_error();
            // Park the descriptors above the target range first, so that
            // moving one into place never overwrites another.
            let mut parked = Vec::with_capacity(raw.len());
            for fd in &raw {
                let p = libc::fcntl(*fd, libc::F_DUPFD, 64);
                if p < 0 {
                    return Err(os());
                }
                parked.push(p);
            }
            for (i, p) in parked.iter().enumerate() {
                let target = FIRST_TAP_FD + i32::try_from(i).unwrap_or(0);
                if libc::dup2(*p, target) < 0 {
                    return Err(os());
                }
                libc::close(*p);
            }
            if libc::setsid() < 0 {
                return Err(os());
            }
            if let Some(r) = run_as
                && (libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(r.gid) != 0
                    || libc::setuid(r.uid) != 0)
            {
                return Err(os());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(spawn_err)?;
    drop(fds);
    let pid = child
        .id()
        .ok_or_else(|| spawn_err(std::io::Error::other("QEMU exited at once")))?;
    let (exited_tx, mut exited) = tokio::sync::watch::channel(None);
    tokio::spawn(async move {
        let status = child.wait().await.ok();
        let _ = exited_tx.send(Some(status));
    });
    let deadline = tokio::time::Instant::now() + READY_LIMIT;
    loop {
        if let Some(status) = *exited.borrow() {
            let stderr = std::fs::read_to_string(stderr_log).unwrap_or_default();
            return Err(LaunchError::Refused {
                status: status.unwrap_or_default(),
                stderr: stderr.trim().to_string(),
            });
        }
        if tokio::net::UnixStream::connect(qmp).await.is_ok() {
            return Ok(pid);
        }
        if tokio::time::Instant::now() >= deadline {
            let _ = super::kill(pid, libc::SIGKILL);
            return Err(LaunchError::Refused {
                status: std::process::ExitStatus::default(),
                stderr: format!("no QMP socket after {READY_LIMIT:?}"),
            });
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
            _ = exited.changed() => {}
        }
    }
}
