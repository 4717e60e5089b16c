//! The cgroup watcher: follows the cgroups of the units in a BPF units
//! scope, so that a unit that restarts (and so gets a new cgroup, with a
//! new id) is back in the hook's scope before its new processes create
//! their sockets, as far as possible.
//!
//! It watches the *parent* directories of the units' cgroups with inotify
//! (`IN_CREATE | IN_DELETE`: systemd creates a unit's cgroup right before
//! it starts the unit's processes) and re-reads the ids at once on an
//! event; it also re-reads them every [`TICK`] whatever happens, so a
//! missed event costs at most that long. A server that creates its
//! listening socket within the few microseconds between systemd's `mkdir`
//! and the agent's map update would still get a TCP socket; the agent's
//! own restarts (`restart: true`) run while this thread is free to react.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use super::Apps;

/// Longest time between two looks at the cgroups.
pub const TICK: Duration = Duration::from_secs(1);

/// The running watcher; dropping it stops the thread (within [`TICK`]).
pub struct Watcher {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts the watcher for `apps`.
pub fn spawn(apps: Arc<Apps>) -> std::io::Result<Watcher> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name("cgroup-watch".into())
        .spawn(move || run(&apps, &flag))?;
    Ok(Watcher {
        stop,
        thread: Some(thread),
    })
}

/// An inotify instance and its watches, by directory.
struct Inotify {
    fd: libc::c_int,
    watches: BTreeMap<PathBuf, libc::c_int>,
}

impl Inotify {
    fn new() -> Option<Self> {
        // SAFETY: no pointers; the result is checked.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        (fd >= 0).then(|| Self {
            fd,
            watches: BTreeMap::new(),
        })
    }

    /// Watches exactly `dirs` (adding and removing watches as needed).
    fn set(&mut self, dirs: &[PathBuf]) {
        let stale: Vec<PathBuf> = self
            .watches
            .keys()
            .filter(|d| !dirs.contains(d))
            .cloned()
            .collect();
        for d in stale {
            if let Some(wd) = self.watches.remove(&d) {
                // SAFETY: `wd` is a watch of this instance.
                unsafe { libc::inotify_rm_watch(self.fd, wd) };
            }
        }
        for d in dirs {
            if self.watches.contains_key(d) {
                continue;
            }
            let Ok(c) = CString::new(d.as_os_str().as_bytes()) else {
                continue;
            };
            let mask = libc::IN_CREATE | libc::IN_DELETE | libc::IN_MOVED_TO | libc::IN_ONLYDIR;
            // SAFETY: `c` is a valid C string for the call.
            let wd = unsafe { libc::inotify_add_watch(self.fd, c.as_ptr(), mask) };
            if wd >= 0 {
                self.watches.insert(d.clone(), wd);
            }
        }
    }

    /// Waits up to `timeout` for events; drains them. Whether any came.
    fn wait(&mut self, timeout: Duration) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n <= 0 {
            return false;
        }
        let mut buf = [0u8; 4096];
        // Only the arrival matters: drain everything.
        // SAFETY: `buf` is writable for its length; the fd is non-blocking.
        while unsafe { libc::read(self.fd, buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
        true
    }
}

impl Drop for Inotify {
    fn drop(&mut self) {
        // SAFETY: the descriptor is ours.
        unsafe { libc::close(self.fd) };
    }
}

fn run(apps: &Apps, stop: &AtomicBool) {
    let mut inotify = Inotify::new();
    if inotify.is_none() {
        eprintln!("edgemig-guest: no inotify; unit cgroups are looked at every second only");
    }
    while !stop.load(Ordering::Relaxed) {
        let dirs = apps.refresh();
        let mut parents: Vec<PathBuf> = dirs
            .iter()
            .filter_map(|d| d.parent().map(PathBuf::from))
            .collect();
        parents.sort();
        parents.dedup();
        match &mut inotify {
            Some(i) => {
                i.set(&parents);
                i.wait(TICK);
            }
            None => std::thread::sleep(TICK),
        }
    }
}
