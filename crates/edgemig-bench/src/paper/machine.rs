//! Where and when a run happened: the machine's CPU, memory, kernel and
//! QEMU, the UTC date, and `git describe` when a repository is at hand
//! (never an error without one).

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use super::results::Machine;

/// Describes this machine; fields that cannot be read are `None`.
pub fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_mib = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<u64>().ok())
        .map(|kib| kib / 1024);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .map(|s| s.trim().to_string());
    Machine {
        cpu_model,
        cpus: std::thread::available_parallelism()
            .map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX))
            .unwrap_or(1),
        memory_mib,
        kernel,
        qemu: first_line(&["qemu-system-x86_64", "--version"]),
    }
}

/// `git describe --always --dirty` in the current directory, if git and a
/// repository are there.
pub fn git_describe() -> Option<String> {
    first_line(&["git", "describe", "--always", "--dirty"])
}

fn first_line(argv: &[&str]) -> Option<String> {
    let (program, args) = argv.split_first()?;
    let out = Command::new(program).args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
}

/// Seconds since the Unix epoch now.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// (year, month, day, hour, minute, second) of a Unix time, UTC.
fn civil(unix: u64) -> (i64, u32, u32, u32, u32, u32) {
    let days = i64::try_from(unix / 86_400).unwrap_or(0);
    let secs = unix % 86_400;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let small = |v: i64| u32::try_from(v).unwrap_or(0);
    let secs = small(i64::try_from(secs).unwrap_or(0));
    (
        year,
        small(month),
        small(day),
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
    )
}

/// RFC 3339 UTC date of a Unix time, e.g. `2025-03-01T12:00:05Z`.
pub fn rfc3339(unix: u64) -> String {
    let (y, mo, d, h, mi, s) = civil(unix);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// Compact UTC stamp for directory names, e.g. `20250301T120005Z`.
pub fn stamp(unix: u64) -> String {
    let (y, mo, d, h, mi, s) = civil(unix);
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_civil_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_740_830_405), "2025-03-01T12:00:05Z");
        assert_eq!(stamp(1_740_830_405), "20250301T120005Z");
    }

    #[test]
    fn machine_reads_this_machine() {
        let m = machine();
        assert!(m.cpus >= 1);
        assert!(m.memory_mib.is_some_and(|mib| mib > 0));
        assert!(m.kernel.is_some());
    }
}
