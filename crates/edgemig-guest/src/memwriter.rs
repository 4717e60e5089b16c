//! The memory writer: dirties a working set of N MiB in passes from a
//! background thread (optionally paced to a MiB/s rate) and verifies every
//! page against the pattern of its recorded generation.
//!
//! The working set and the per-page generations live under one mutex; the
//! writer takes it per chunk of pages, verification takes it for the whole
//! check, so verification sees a consistent state and the writer is paused
//! meanwhile.

use crate::mempattern::{PAGE_BYTES, PAGE_WORDS, fill_page, page_matches};
use edgemig_guest_proto::{MemStatus, MemVerifyReport};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Pages written per lock acquisition (256 KiB).
const CHUNK_PAGES: usize = 64;
/// Longest single sleep while pacing, so stop requests are seen quickly.
const MAX_SLEEP: Duration = Duration::from_millis(50);
/// Bytes in a MiB.
const MIB: u64 = 1 << 20;

/// Errors of the memory writer.
#[derive(Debug, thiserror::Error)]
pub enum MemError {
    /// A working set of 0 MiB was asked for.
    #[error("working set must be at least 1 MiB")]
    ZeroSize,
    /// The working set does not fit in available memory.
    #[error("cannot allocate {mib} MiB: {why}")]
    Alloc {
        /// Size asked for.
        mib: u32,
        /// Why not.
        why: String,
    },
    /// Verification asked before any working set exists.
    #[error("memory writer was never started")]
    NotStarted,
    /// The writer thread could not be spawned.
    #[error("spawning writer thread: {0}")]
    Spawn(std::io::Error),
    /// A thread panicked while holding the working set.
    #[error("working set lock poisoned")]
    Poisoned,
}

/// Pages and their generations.
struct WorkingSet {
    /// `pages * PAGE_WORDS` words.
    words: Vec<u64>,
    /// Generation last written to each page (0 = never).
    gens: Vec<u64>,
}

/// State shared with the writer thread.
struct Shared {
    set: Mutex<WorkingSet>,
    stop: AtomicBool,
    /// Number of verifications waiting for the lock; the writer yields.
    waiting: AtomicUsize,
    passes: AtomicU64,
    pages_written: AtomicU64,
}

/// Configuration and thread of the current run.
#[derive(Default)]
struct Control {
    mib: u32,
    rate_mib_s: Option<u32>,
    shared: Option<Arc<Shared>>,
    thread: Option<JoinHandle<()>>,
}

/// The memory writer; cheap to share behind an `Arc`.
#[derive(Default)]
pub struct MemWriter {
    control: Mutex<Control>,
}

fn lock<T>(m: &Mutex<T>) -> Result<MutexGuard<'_, T>, MemError> {
    m.lock().map_err(|_| MemError::Poisoned)
}

/// Allocates a zeroed vector without aborting on failure.
fn zeroed(len: usize, mib: u32) -> Result<Vec<u64>, MemError> {
    let mut v: Vec<u64> = Vec::new();
    v.try_reserve_exact(len).map_err(|e| MemError::Alloc {
        mib,
        why: e.to_string(),
    })?;
    v.resize(len, 0);
    Ok(v)
}

/// MemAvailable from `/proc/meminfo` in bytes, if readable.
pub(crate) fn mem_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

impl MemWriter {
    /// A writer that has never run.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts (or restarts, with a fresh working set) writing `mib` MiB at
    /// `rate_mib_s` MiB/s (`None`: as fast as possible).
    pub fn start(&self, mib: u32, rate_mib_s: Option<u32>) -> Result<MemStatus, MemError> {
        if mib == 0 {
            return Err(MemError::ZeroSize);
        }
        let mut ctl = lock(&self.control)?;
        stop_thread(&mut ctl);
        // Free the old working set before allocating the new one.
        ctl.shared = None;
        ctl.mib = 0;
        let bytes = u64::from(mib) * MIB;
        if let Some(avail) = mem_available()
            && bytes > avail
        {
            return Err(MemError::Alloc {
                mib,
                why: format!("only {} MiB available", avail / MIB),
            });
        }
        let pages = usize::try_from(bytes / PAGE_BYTES as u64).map_err(|e| MemError::Alloc {
            mib,
            why: e.to_string(),
        })?;
        let words = zeroed(pages * PAGE_WORDS, mib)?;
        let gens = zeroed(pages, mib)?;
        let shared = Arc::new(Shared {
            set: Mutex::new(WorkingSet { words, gens }),
            stop: AtomicBool::new(false),
            waiting: AtomicUsize::new(0),
            passes: AtomicU64::new(0),
            pages_written: AtomicU64::new(0),
        });
        let rate = rate_mib_s.filter(|&r| r > 0);
        let thread_shared = Arc::clone(&shared);
        let handle = std::thread::Builder::new()
            .name("memwriter".into())
            .spawn(move || write_loop(&thread_shared, rate))
            .map_err(MemError::Spawn)?;
        ctl.mib = mib;
        ctl.rate_mib_s = rate_mib_s;
        ctl.shared = Some(shared);
        ctl.thread = Some(handle);
        Ok(status_of(&ctl))
    }

    /// Stops writing; the working set stays for verification.
    pub fn stop(&self) -> Result<MemStatus, MemError> {
        let mut ctl = lock(&self.control)?;
        stop_thread(&mut ctl);
        Ok(status_of(&ctl))
    }

    /// Current progress.
    pub fn status(&self) -> Result<MemStatus, MemError> {
        let ctl = lock(&self.control)?;
        Ok(status_of(&ctl))
    }

    /// Checks every page against the pattern of its generation. The writer
    /// waits meanwhile and then continues where it was.
    pub fn verify(&self) -> Result<MemVerifyReport, MemError> {
        let shared = {
            let ctl = lock(&self.control)?;
            ctl.shared.clone().ok_or(MemError::NotStarted)?
        };
        shared.waiting.fetch_add(1, Ordering::SeqCst);
        let set = shared.set.lock();
        shared.waiting.fetch_sub(1, Ordering::SeqCst);
        let set = set.map_err(|_| MemError::Poisoned)?;
        Ok(verify_set(&set))
    }

    /// Flips one bit of one byte of the working set (tests only).
    #[cfg(test)]
    fn corrupt(&self, page: usize, byte: usize) {
        let ctl = self.control.lock().unwrap();
        let shared = ctl.shared.as_ref().unwrap();
        let mut set = shared.set.lock().unwrap();
        let word = page * PAGE_WORDS + byte / 8;
        set.words[word] ^= 1u64 << ((byte % 8) * 8);
    }
}

impl Drop for MemWriter {
    fn drop(&mut self) {
        if let Ok(mut ctl) = self.control.lock() {
            stop_thread(&mut ctl);
        }
    }
}

fn status_of(ctl: &Control) -> MemStatus {
    let (passes, pages_written) = ctl.shared.as_ref().map_or((0, 0), |s| {
        (
            s.passes.load(Ordering::Relaxed),
            s.pages_written.load(Ordering::Relaxed),
        )
    });
    MemStatus {
        mib: ctl.mib,
        running: ctl.thread.as_ref().is_some_and(|t| !t.is_finished()),
        passes,
        pages_written,
        rate_mib_s: ctl.rate_mib_s,
    }
}

fn stop_thread(ctl: &mut Control) {
    if let Some(shared) = &ctl.shared {
        shared.stop.store(true, Ordering::SeqCst);
    }
    if let Some(handle) = ctl.thread.take()
        && handle.join().is_err()
    {
        eprintln!("edgemig-guest: memory writer thread panicked");
    }
}

fn verify_set(set: &WorkingSet) -> MemVerifyReport {
    let mut bad_pages = 0;
    let mut first_bad_page = None;
    for (index, (page, &generation)) in set
        .words
        .chunks_exact(PAGE_WORDS)
        .zip(set.gens.iter())
        .enumerate()
    {
        let index = index as u64;
        if !page_matches(page, index, generation) {
            bad_pages += 1;
            first_bad_page.get_or_insert(index);
        }
    }
    MemVerifyReport {
        pages: set.gens.len() as u64,
        bad_pages,
        first_bad_page,
    }
}

/// Writes passes until asked to stop.
fn write_loop(shared: &Shared, rate_mib_s: Option<u32>) {
    let mut generation: u64 = 1;
    let mut next_page: usize = 0;
    // Pacing: bytes written since `epoch` may not exceed rate * elapsed.
    let mut epoch = Instant::now();
    let mut paced_bytes: u64 = 0;
    while !shared.stop.load(Ordering::SeqCst) {
        if shared.waiting.load(Ordering::SeqCst) > 0 {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        let written = {
            let Ok(mut set) = shared.set.lock() else {
                return;
            };
            let WorkingSet { words, gens } = &mut *set;
            let total = gens.len();
            if total == 0 {
                return;
            }
            let end = (next_page + CHUNK_PAGES).min(total);
            for p in next_page..end {
                fill_page(
                    &mut words[p * PAGE_WORDS..(p + 1) * PAGE_WORDS],
                    p as u64,
                    generation,
                );
                gens[p] = generation;
            }
            let n = end - next_page;
            next_page = end;
            if next_page == total {
                next_page = 0;
                generation += 1;
                shared.passes.fetch_add(1, Ordering::Relaxed);
            }
            n
        };
        shared
            .pages_written
            .fetch_add(written as u64, Ordering::Relaxed);
        if let Some(rate) = rate_mib_s {
            paced_bytes += (written * PAGE_BYTES) as u64;
            let allowed =
                Duration::from_secs_f64(paced_bytes as f64 / (f64::from(rate) * MIB as f64));
            let elapsed = epoch.elapsed();
            if let Some(ahead) = allowed.checked_sub(elapsed) {
                sleep_unless_stopped(shared, ahead);
            } else if elapsed - allowed > Duration::from_secs(1) {
                // Paused (verification) or too slow: do not burst to catch up.
                epoch = Instant::now();
                paced_bytes = 0;
            }
        }
    }
}

fn sleep_unless_stopped(shared: &Shared, mut total: Duration) {
    while !total.is_zero() && !shared.stop.load(Ordering::SeqCst) {
        let step = total.min(MAX_SLEEP);
        std::thread::sleep(step);
        total -= step;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait_passes(w: &MemWriter, n: u64) {
        let start = Instant::now();
        while w.status().unwrap().passes < n {
            assert!(start.elapsed() < Duration::from_secs(60), "writer too slow");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn passes_verify_clean_then_detect_corruption() {
        let w = MemWriter::new();
        assert!(matches!(w.verify(), Err(MemError::NotStarted)));
        let st = w.start(4, None).unwrap();
        assert_eq!(st.mib, 4);
        wait_passes(&w, 3);
        // Verify while running: consistent snapshot.
        let r = w.verify().unwrap();
        assert_eq!(r.pages, 1024);
        assert_eq!(r.bad_pages, 0);
        assert_eq!(r.first_bad_page, None);
        let st = w.stop().unwrap();
        assert!(!st.running);
        assert!(st.passes >= 3);
        assert!(st.pages_written >= 3 * 1024);
        w.corrupt(77, 1234);
        let r = w.verify().unwrap();
        assert_eq!(r.bad_pages, 1);
        assert_eq!(r.first_bad_page, Some(77));
    }

    #[test]
    fn restart_changes_size_and_rate_paces() {
        let w = MemWriter::new();
        w.start(2, None).unwrap();
        wait_passes(&w, 1);
        let st = w.start(1, Some(4)).unwrap();
        assert_eq!(st.mib, 1);
        assert_eq!(st.rate_mib_s, Some(4));
        std::thread::sleep(Duration::from_millis(300));
        let st = w.status().unwrap();
        assert!(st.running);
        // 4 MiB/s for 0.3 s: about 1.2 MiB = ~300 pages, surely < 3 MiB.
        assert!(st.pages_written < 3 * 256, "{st:?}");
        assert!(st.pages_written > 0);
        let r = w.verify().unwrap();
        assert_eq!(r.pages, 256);
        assert_eq!(r.bad_pages, 0);
    }

    #[test]
    fn zero_and_huge_sizes_are_errors() {
        let w = MemWriter::new();
        assert!(matches!(w.start(0, None), Err(MemError::ZeroSize)));
        assert!(w.start(u32::MAX, None).is_err());
        assert_eq!(w.status().unwrap().mib, 0);
    }
}
