//! The link watcher: a thread subscribed to rtnetlink link notifications
//! (`RTNLGRP_LINK` on a `NETLINK_ROUTE` socket) that applies the pending
//! NIC plans ([`Planner`]) the moment their NIC gets carrier.
//!
//! Notifications only wake it up: on each, it re-reads the state of every
//! planned NIC, so a lost notification cannot lose a carrier change. When
//! the socket overflows (`ENOBUFS`, notifications dropped) it resyncs the
//! same way, and while a plan is pending it also resyncs every
//! [`RESYNC`]. Socket failures are logged and the socket reopened; the
//! thread never ends.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use netlink_sys::{Socket, protocols::NETLINK_ROUTE};
use socket2::SockRef;

use super::plan::Planner;

/// Longest wait between two looks at the pending plans.
pub const RESYNC: Duration = Duration::from_secs(1);
/// Pause before reopening a failed socket.
const REOPEN: Duration = Duration::from_secs(1);
/// Receive buffer asked for (link notifications come in bursts).
const RCVBUF: usize = 1 << 20;
/// Read buffer: a notification that does not fit is truncated, which is
/// fine since only its arrival matters.
const DATAGRAM: usize = 64 << 10;

/// Errors of the link watcher (logged, never fatal).
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The notification socket failed.
    #[error("Link notification socket: {op} failed")]
    Io {
        /// What was attempted.
        op: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
}

fn io_err(op: &'static str) -> impl FnOnce(io::Error) -> WatchError {
    move |source| WatchError::Io { op, source }
}

/// What one wait on the socket brought.
enum Wake {
    /// A notification arrived.
    Event,
    /// Nothing within [`RESYNC`].
    Timeout,
    /// Notifications were dropped.
    Overrun,
}

/// A socket subscribed to link notifications, in the namespace of the
/// thread that opened it.
struct LinkEvents {
    sock: Socket,
    buf: Vec<u8>,
}

impl LinkEvents {
    fn open() -> Result<Self, WatchError> {
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(io_err("open"))?;
        sock.bind_auto().map_err(io_err("bind"))?;
        sock.add_membership(libc::RTNLGRP_LINK)
            .map_err(io_err("join RTNLGRP_LINK"))?;
        // Best effort: the default buffer works, only overflows sooner.
        let _ = sock.set_rx_buf_sz(RCVBUF);
        SockRef::from(&sock)
            .set_read_timeout(Some(RESYNC))
            .map_err(io_err("set read timeout"))?;
        Ok(Self {
            sock,
            buf: Vec::with_capacity(DATAGRAM),
        })
    }

    fn wait(&mut self) -> Result<Wake, WatchError> {
        loop {
            self.buf.clear();
            match self.sock.recv(&mut self.buf, 0) {
                Ok(_) => return Ok(Wake::Event),
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => return Ok(Wake::Overrun),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(Wake::Timeout);
                }
                Err(e) => return Err(io_err("receive")(e)),
            }
        }
    }
}

/// The running watcher thread; dropping it stops the thread (within
/// [`RESYNC`]) and waits for it. The agent keeps it for its whole life.
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

/// Starts the watcher thread for `planner` in the calling thread's network
/// namespace.
pub fn spawn(planner: Arc<Planner>) -> io::Result<Watcher> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name("link-watch".into())
        .spawn(move || run(&planner, &flag))?;
    Ok(Watcher {
        stop,
        thread: Some(thread),
    })
}

/// The watcher's loop, until `stop` is set.
fn run(planner: &Planner, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match LinkEvents::open() {
            Ok(events) => match watch(events, planner, stop) {
                Ok(()) => return,
                Err(e) => eprintln!("edgemig-guest: link watcher: {e}; reopening"),
            },
            Err(e) => eprintln!("edgemig-guest: link watcher: {e}"),
        }
        // Plans staged meanwhile still get applied at the next look.
        std::thread::sleep(REOPEN);
    }
}

/// Serves one socket until it fails or `stop` is set.
fn watch(mut events: LinkEvents, planner: &Planner, stop: &AtomicBool) -> Result<(), WatchError> {
    // Subscribed now: anything that happened before is read from the links.
    planner.apply_pending();
    while !stop.load(Ordering::Relaxed) {
        match events.wait()? {
            Wake::Event | Wake::Timeout => {
                planner.apply_pending();
            }
            Wake::Overrun => {
                eprintln!("edgemig-guest: link notifications dropped (ENOBUFS); resyncing");
                planner.apply_pending();
            }
        }
    }
    Ok(())
}
