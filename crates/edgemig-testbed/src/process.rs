//! Processes the testbed runs (link emulators, site agents): started
//! detached in their own session, optionally inside a namespace, logging to
//! a file; ended by pid after checking they are still ours.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Errors starting a process.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// It could not be started.
    #[error("Cannot start {0}")]
    Spawn(String, #[source] std::io::Error),
    /// It did not become ready.
    #[error("{what} did not become ready within {after:?}; log {log}:\n{tail}")]
    NotReady {
        /// What.
        what: String,
        /// Limit.
        after: Duration,
        /// Log path.
        log: String,
        /// End of its log.
        tail: String,
    },
}

/// Starts `program args` detached (new session), inside `netns` when given,
/// with stdout and stderr appended to `log`. Returns its pid.
pub fn spawn_detached<I, S>(
    netns: Option<&str>,
    program: &Path,
    args: I,
    log: &Path,
) -> Result<u32, ProcessError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let what = program.display().to_string();
    let err = |e| ProcessError::Spawn(what.clone(), e);
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(err)?;
    let errout = out.try_clone().map_err(err)?;
    let ns_file = match netns {
        Some(ns) => {
            let path = edgemig_netns::netns_path(ns).map_err(|e| err(std::io::Error::other(e)))?;
            Some(File::open(path).map_err(err)?)
        }
        None => None,
    };
    let ns_fd = ns_file.as_ref().map(AsRawFd::as_raw_fd);
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(errout);
    // SAFETY: the closure runs in the forked child before exec and only
    // makes async-signal-safe system calls (setsid, setns) on values
    // prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if let Some(fd) = ns_fd
                && libc::setns(fd, libc::CLONE_NEWNET) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(err)?;
    drop(ns_file);
    Ok(child.id())
}

/// Whether `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| !r.trim_start().starts_with(['Z', 'X']))
        })
        .unwrap_or(false)
}

/// Whether `pid` runs and its command line contains `marker`.
pub fn is_ours(pid: u32, marker: &str) -> bool {
    alive(pid)
        && std::fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker))
}

fn signal(pid: u32, sig: i32) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) takes plain integers and has no memory effects.
        unsafe { libc::kill(pid, sig) };
    }
}

/// Ends `pid` if it is still ours: SIGTERM, then SIGKILL after `grace`.
pub fn stop(pid: u32, marker: &str, grace: Duration) {
    if !is_ours(pid, marker) {
        return;
    }
    signal(pid, libc::SIGTERM);
    let deadline = Instant::now() + grace;
    while is_ours(pid, marker) {
        if Instant::now() > deadline {
            signal(pid, libc::SIGKILL);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Reap it if it is our child (tests run `up` in-process).
    let mut status = 0;
    if let Ok(p) = libc::pid_t::try_from(pid) {
        for _ in 0..100 {
            // SAFETY: waitpid with WNOHANG on a pid; `status` is a valid out pointer.
            let rc = unsafe { libc::waitpid(p, &mut status, libc::WNOHANG) };
            if rc != 0 || !is_ours(pid, marker) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Waits until `log` contains `needle` (or the process died), up to `limit`.
pub fn wait_for_log(
    what: &str,
    pid: u32,
    log: &Path,
    needle: &str,
    limit: Duration,
) -> Result<(), ProcessError> {
    wait_for_log_after(what, pid, log, 0, needle, limit)
}

/// Like [`wait_for_log`], looking only at what the log got after its first
/// `offset` bytes (a restarted process appending to its old log).
pub fn wait_for_log_after(
    what: &str,
    pid: u32,
    log: &Path,
    offset: u64,
    needle: &str,
    limit: Duration,
) -> Result<(), ProcessError> {
    let start = Instant::now();
    loop {
        let all = std::fs::read(log).unwrap_or_default();
        let skip = usize::try_from(offset).unwrap_or(usize::MAX).min(all.len());
        let text = String::from_utf8_lossy(&all[skip..]).into_owned();
        if text.contains(needle) {
            return Ok(());
        }
        if !alive(pid) || start.elapsed() > limit {
            let tail: String = text
                .lines()
                .rev()
                .take(20)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            return Err(ProcessError::NotReady {
                what: what.to_string(),
                after: limit,
                log: log.display().to_string(),
                tail,
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A command prepared to run inside `netns` (the child joins the namespace
/// between fork and exec). The returned file must stay open until the
/// command was spawned.
fn command_in(netns: &str, argv: &[String]) -> Result<(Command, File), ProcessError> {
    let Some((program, args)) = argv.split_first() else {
        return Err(ProcessError::Spawn(
            "an empty command".into(),
            std::io::Error::other("nothing to run"),
        ));
    };
    let err = |e| ProcessError::Spawn(program.clone(), e);
    let path = edgemig_netns::netns_path(netns).map_err(|e| err(std::io::Error::other(e)))?;
    let ns_file = File::open(path).map_err(err)?;
    let fd = ns_file.as_raw_fd();
    let mut cmd = Command::new(program);
    cmd.args(args);
    // SAFETY: runs in the forked child before exec; setns is
    // async-signal-safe and `fd` was opened before the fork.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok((cmd, ns_file))
}

/// Runs `argv` inside `netns` in the foreground (stdio inherited) and
/// returns its exit status.
pub fn run_in(netns: &str, argv: &[String]) -> Result<std::process::ExitStatus, ProcessError> {
    let (mut cmd, _ns) = command_in(netns, argv)?;
    cmd.status()
        .map_err(|e| ProcessError::Spawn(argv[0].clone(), e))
}

/// Runs `argv` inside `netns` and collects its output.
pub fn output_in(netns: &str, argv: &[String]) -> Result<std::process::Output, ProcessError> {
    let (mut cmd, _ns) = command_in(netns, argv)?;
    cmd.stdin(Stdio::null())
        .output()
        .map_err(|e| ProcessError::Spawn(argv[0].clone(), e))
}
