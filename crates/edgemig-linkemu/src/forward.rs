//! Forwarding loop of one direction: read frames from the input TAP, pass
//! them through the [`Direction`], write released frames to the output TAP.
//! One thread per direction sleeping in `ppoll` until input arrives, the
//! next frame is due, or it is woken; buffers are recycled through a pool.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::shaper::{Direction, LinkParams, ParamsError};
use crate::tap::Tap;
use crate::waker::{Waker, WakerError};

/// Largest frame read (TAP without offloads never exceeds MTU + 14).
const SCRATCH: usize = 65_536;
/// Frames read per wake-up before releasing due ones again.
const READ_BATCH: usize = 256;
/// Minimum spacing of wake-ups while busy: frames are read and released in
/// batches (at most ~1000 wake-ups per second and direction), which costs
/// at most this much extra latency and saves most of the context switches.
/// An idle direction still wakes at once for a new frame.
const MIN_GAP: Duration = Duration::from_millis(1);
/// Free buffers kept for reuse.
const POOL_MAX: usize = 1024;
/// Initial capacity of a pooled buffer (fits a 1500-byte MTU frame).
const BUF_CAP: usize = 1536;

/// Errors of the forwarding loop.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("invalid parameters: {0}")]
    Params(#[from] ParamsError),
    #[error(transparent)]
    Waker(#[from] WakerError),
    #[error("ppoll: {0}")]
    Poll(#[source] io::Error),
    #[error("read from {tap}: {source}")]
    Read {
        tap: String,
        #[source]
        source: io::Error,
    },
}

/// State of one direction shared between its thread and the control socket.
pub struct DirShared {
    name: &'static str,
    dir: Mutex<Direction<Vec<u8>>>,
    waker: Waker,
    write_errors: AtomicU64,
}

impl DirShared {
    pub fn new(name: &'static str, params: LinkParams, seed: u64) -> Result<Self, ForwardError> {
        Ok(Self {
            name,
            dir: Mutex::new(Direction::new(params, seed)?),
            waker: Waker::new()?,
            write_errors: AtomicU64::new(0),
        })
    }

    /// `a_to_b` or `b_to_a`.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Locks the direction (a poisoned lock is still usable: the state is
    /// plain counters and queues).
    pub fn lock(&self) -> MutexGuard<'_, Direction<Vec<u8>>> {
        self.dir.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Frames that could not be written to the output TAP.
    pub fn write_errors(&self) -> u64 {
        self.write_errors.load(Ordering::Relaxed)
    }

    /// Wakes the forwarding thread (after a parameter change or shutdown).
    pub fn wake(&self) {
        self.waker.wake();
    }
}

struct Pool(Vec<Vec<u8>>);

impl Pool {
    fn get(&mut self, data: &[u8]) -> Vec<u8> {
        let mut b = self.0.pop().unwrap_or_else(|| Vec::with_capacity(BUF_CAP));
        b.clear();
        b.extend_from_slice(data);
        b
    }

    fn put(&mut self, b: Vec<u8>) {
        if self.0.len() < POOL_MAX && b.capacity() <= 2 * BUF_CAP {
            self.0.push(b);
        }
    }
}

/// Runs until `stop` is set (and the thread woken) or reading fails.
pub fn run(
    input: &Tap,
    output: &Tap,
    shared: &DirShared,
    stop: &AtomicBool,
) -> Result<(), ForwardError> {
    let mut scratch = vec![0u8; SCRATCH];
    let mut pool = Pool(Vec::new());
    let mut ready: Vec<Vec<u8>> = Vec::with_capacity(READ_BATCH);
    let mut incoming: Vec<Vec<u8>> = Vec::with_capacity(READ_BATCH);
    // When the previous iteration moved frames, the next wake-up is at least
    // MIN_GAP later (input is not watched meanwhile), so busy links work in
    // batches; an idle iteration clears it and input wakes us at once.
    let mut busy_at: Option<Instant> = None;
    loop {
        if stop.load(Ordering::Acquire) {
            return Ok(());
        }
        let now = Instant::now();
        let next = {
            let mut d = shared.lock();
            while let Some(f) = d.pop_ready(now) {
                ready.push(f);
            }
            d.next_release(now)
        };
        let released = !ready.is_empty();
        for f in ready.drain(..) {
            if output.write(&f).is_err() {
                shared.write_errors.fetch_add(1, Ordering::Relaxed);
            }
            pool.put(f);
        }
        let gap_end = busy_at.map(|t| t + MIN_GAP).filter(|&t| t > now);
        let deadline = gap_end.or(next);
        let (input_ready, woken) = wait(input, gap_end.is_none(), &shared.waker, deadline)?;
        if woken {
            shared.waker.drain();
        }
        let input_ready = input_ready || gap_end.is_some();
        busy_at = released.then_some(now);
        if !input_ready {
            continue;
        }
        while incoming.len() < READ_BATCH {
            match input.read(&mut scratch) {
                Ok(n) => incoming.push(pool.get(&scratch[..n.min(SCRATCH)])),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(ForwardError::Read {
                        tap: input.name().to_string(),
                        source,
                    });
                }
            }
        }
        if incoming.is_empty() {
            continue;
        }
        let now = Instant::now();
        busy_at = Some(now);
        let mut d = shared.lock();
        for f in incoming.drain(..) {
            if let (_, Some(dropped)) = d.offer(now, f) {
                pool.put(dropped);
            }
        }
    }
}

/// Sleeps until input is readable, the waker fires or `deadline` passes.
/// Returns (input readable, woken).
fn wait(
    input: &Tap,
    watch_input: bool,
    waker: &Waker,
    deadline: Option<Instant>,
) -> Result<(bool, bool), ForwardError> {
    let mut fds = [
        libc::pollfd {
            // A negative fd is ignored by ppoll.
            fd: if watch_input { input.as_raw_fd() } else { -1 },
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: waker.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    let ts = deadline.map(|d| {
        let left = d.saturating_duration_since(Instant::now());
        libc::timespec {
            tv_sec: left.as_secs() as libc::time_t,
            tv_nsec: libc::c_long::from(left.subsec_nanos() as i32),
        }
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: fds is a valid array of 2 pollfds; ts_ptr is null or points to
    // a live timespec; a null sigmask leaves the mask unchanged.
    let rc = unsafe { libc::ppoll(fds.as_mut_ptr(), 2, ts_ptr, std::ptr::null()) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok((false, false));
        }
        return Err(ForwardError::Poll(e));
    }
    let readable = fds[0].revents & (libc::POLLIN | libc::POLLERR | libc::POLLHUP) != 0;
    let woken = fds[1].revents & libc::POLLIN != 0;
    Ok((readable, woken))
}
