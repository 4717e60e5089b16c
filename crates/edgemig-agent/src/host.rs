//! Facts about the host the agent runs on: memory, spare CPU (measured in
//! the background, so a migration need not wait for a window), process
//! liveness.

use std::path::Path;

/// Memory figures from `/proc/meminfo`, in MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostMemory {
    /// `MemTotal`.
    pub total_mib: u64,
    /// `MemAvailable`.
    pub available_mib: u64,
}

/// Reads `/proc/meminfo`.
pub fn memory() -> std::io::Result<HostMemory> {
    parse_meminfo(&std::fs::read_to_string("/proc/meminfo")?).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, "unexpected /proc/meminfo")
    })
}

fn parse_meminfo(text: &str) -> Option<HostMemory> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| {
                l.strip_prefix(name)?
                    .trim()
                    .strip_suffix("kB")?
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map(|kib| kib / 1024)
    };
    Some(HostMemory {
        total_mib: field("MemTotal:")?,
        available_mib: field("MemAvailable:")?,
    })
}

/// Cores not busy now: online cores times the idle share of the CPU time
/// over `window` (from `/proc/stat`). A short window sees the load of the
/// moment, unlike the load average, which still counts the last minute's
/// work (a migration that just ended, say).
pub async fn spare_cores(window: std::time::Duration) -> f64 {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get) as f64;
    let before = cpu_times();
    tokio::time::sleep(window).await;
    match (before, cpu_times()) {
        (Some(a), Some(b)) => cores * idle_share(a, b),
        _ => cores,
    }
}

/// The spare cores of the latest window of the background measurement
/// ([`watch_spare_cores`]), as `f64` bits; `u64::MAX` before the first.
static LATEST_SPARE: std::sync::OnceLock<std::sync::Arc<std::sync::atomic::AtomicU64>> =
    std::sync::OnceLock::new();

/// Starts measuring spare cores over back-to-back windows of `window`
/// in the background (once per process; later calls do nothing), so
/// [`spare_cores_now`] answers at once with the latest window.
pub fn watch_spare_cores(window: std::time::Duration) {
    use std::sync::atomic::{AtomicU64, Ordering};
    LATEST_SPARE.get_or_init(|| {
        let latest = std::sync::Arc::new(AtomicU64::new(u64::MAX));
        let writer = latest.clone();
        tokio::spawn(async move {
            loop {
                let spare = spare_cores(window).await;
                writer.store(spare.to_bits(), Ordering::Relaxed);
            }
        });
        latest
    });
}

/// Spare cores in the latest window of the background measurement; when
/// it is not running or has no window yet, measured over `window` now.
pub async fn spare_cores_now(window: std::time::Duration) -> f64 {
    let latest = LATEST_SPARE
        .get()
        .map(|l| l.load(std::sync::atomic::Ordering::Relaxed))
        .filter(|bits| *bits != u64::MAX);
    match latest {
        Some(bits) => f64::from_bits(bits),
        None => spare_cores(window).await,
    }
}

/// `(idle, total)` jiffies of all CPUs.
fn cpu_times() -> Option<(u64, u64)> {
    parse_cpu_line(std::fs::read_to_string("/proc/stat").ok()?.lines().next()?)
}

/// Parses the `cpu ...` summary line of `/proc/stat`: idle counts idle and
/// iowait.
fn parse_cpu_line(line: &str) -> Option<(u64, u64)> {
    let fields: Vec<u64> = line
        .strip_prefix("cpu ")?
        .split_whitespace()
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
    // guest and guest_nice are already counted in user and nice.
    let total = fields.iter().take(8).sum();
    Some((idle, total))
}

/// Share of idle time between two samples (1.0 when nothing elapsed).
fn idle_share(a: (u64, u64), b: (u64, u64)) -> f64 {
    let total = b.1.saturating_sub(a.1);
    if total == 0 {
        return 1.0;
    }
    (b.0.saturating_sub(a.0) as f64 / total as f64).clamp(0.0, 1.0)
}

/// Whether process `pid` exists and its command line contains `marker`
/// (guards against a recycled pid).
pub fn process_matches(pid: u32, marker: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let marker = marker.as_os_str().as_encoded_bytes();
    cmdline.windows(marker.len()).any(|w| w == marker)
}

/// Whether process `pid` still exists (and is not a zombie).
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Waits until process `pid` (not necessarily a child) exits, without
/// polling: a pidfd becomes readable when the process ends.
pub async fn wait_exit(pid: u32) -> std::io::Result<()> {
    use std::os::fd::{FromRawFd, OwnedFd};
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if raw < 0 {
        let err = std::io::Error::last_os_error();
        return if err.raw_os_error() == Some(libc::ESRCH) {
            Ok(())
        } else {
            Err(err)
        };
    }
    let raw = i32::try_from(raw).map_err(|_| std::io::Error::other("pidfd out of range"))?;
    // SAFETY: `raw` is a fresh pidfd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: `fd` is an OwnedFd moved into the AsyncFd; it stays open and
    // refers to the same pidfd until the AsyncFd is dropped.
    let async_fd = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)?
    };
    let _guard = async_fd.readable().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lines_give_idle_shares() {
        let a = parse_cpu_line("cpu  100 0 100 700 100 0 0 0 0 0").unwrap();
        assert_eq!(a, (800, 1000));
        let b = parse_cpu_line("cpu  400 0 200 900 100 0 0 0 0 0").unwrap();
        assert!((idle_share(a, b) - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(idle_share(a, a), 1.0);
        assert!(parse_cpu_line("intr 1 2 3").is_none());
    }

    #[test]
    fn parses_meminfo() {
        let m = parse_meminfo(
            "MemTotal:       24576000 kB\nMemFree: 1 kB\nMemAvailable:   2048000 kB\n",
        )
        .unwrap();
        assert_eq!(
            m,
            HostMemory {
                total_mib: 24000,
                available_mib: 2000
            }
        );
        assert!(parse_meminfo("nothing").is_none());
    }

    #[test]
    fn own_process_is_alive_and_matches() {
        let me = std::process::id();
        assert!(process_alive(me));
        let exe = std::env::current_exe().unwrap();
        assert!(process_matches(me, Path::new(exe.file_name().unwrap())));
        assert!(!process_matches(me, Path::new("no-such-marker-xyz")));
        assert!(memory().unwrap().total_mib > 0);
    }
}
