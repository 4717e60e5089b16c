//! Per-namespace network sysctls edgemig sets (the testbed, in the site
//! namespaces it creates) or checks (the agent, in the namespace it runs
//! in), read and written through `/proc/sys` of the calling thread's
//! namespace.

use std::io;

/// `net.ipv4.tcp_notsent_lowat` for site hosts, bytes: a socket keeps at
/// most this much unsent data queued. QEMU's migration streams otherwise
/// fill their send buffers (megabytes each), and the VM's last state
/// waits behind them at the switchover: measured here, 0.5–0.75 s of the
/// VM's pause on 2 × 50 Mbit/s paths, against 0.03–0.3 s with this value
/// (`docs/results.md`). Linux applies it to MPTCP subflows too.
pub const MIGRATION_NOTSENT_LOWAT: u64 = 128 * 1024;

/// `net.ipv4.tcp_wmem` of the testbed's site hosts (min, default, max
/// bytes). An MPTCP connection queues its data above its subflows, where
/// `tcp_notsent_lowat` does not reach; its send buffer grows to the sum of
/// theirs, up to the max. Capped at 512 KiB per subflow, a single MPTCP
/// migration stream over 2 × 50 Mbit/s (10 ms one-way) keeps its full rate and the
/// VM's last state arrives 70–150 ms after QEMU sent it, against 390–480 ms
/// with the kernel's 4 MiB (256 KiB cost a fifth of the rate;
/// `docs/results.md`). The cap fits these paths' bandwidth-delay product:
/// a real site with faster or longer paths needs a larger one
/// (`docs/real-hosts.md`).
pub const TESTBED_TCP_WMEM: &str = "4096 16384 524288";

/// The `/proc/sys` file of `key` (`net.ipv4.tcp_notsent_lowat`).
fn path(key: &str) -> String {
    format!("/proc/sys/{}", key.replace('.', "/"))
}

/// Reads sysctl `key` as an unsigned number.
pub fn read_u64(key: &str) -> io::Result<u64> {
    let text = std::fs::read_to_string(path(key))?;
    text.trim()
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{key}: {e}")))
}

/// Writes sysctl `key`.
pub fn write(key: &str, value: &str) -> io::Result<()> {
    std::fs::write(path(key), value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_proc_sys_files() {
        assert_eq!(
            path("net.ipv4.tcp_notsent_lowat"),
            "/proc/sys/net/ipv4/tcp_notsent_lowat"
        );
    }

    #[test]
    fn a_readable_sysctl_reads_as_a_number() {
        // Present in every network namespace.
        assert!(read_u64("net.ipv4.tcp_notsent_lowat").is_ok());
        assert!(read_u64("net.ipv4.no_such_key").is_err());
    }
}
