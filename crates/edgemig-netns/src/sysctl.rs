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

/// First of the ports a destination's QEMU listens on for migrations
/// (memory and NBD, two per VM).
pub const MIGRATION_PORT_FIRST: u16 = 49152;
/// Last of them: 4096 VMs' pairs.
pub const MIGRATION_PORT_LAST: u16 = 57343;

/// `net.ipv4.ip_local_reserved_ports` for site hosts. The migration ports
/// lie in Linux's ephemeral range (32768–60999): without the reservation
/// any outgoing connection of the host (the agent's own, QEMU's) may hold
/// one, and the destination's QEMU then cannot listen there (`Address
/// already in use`, seen in `bench soak`).
pub fn migration_reserved_ports() -> String {
    format!("{MIGRATION_PORT_FIRST}-{MIGRATION_PORT_LAST}")
}

/// Whether `reserved` (the sysctl's text: `a-b,c,...`) covers every port
/// of `first..=last`.
pub fn reserves(reserved: &str, first: u16, last: u16) -> bool {
    let ranges: Vec<(u16, u16)> = reserved
        .trim()
        .split(',')
        .filter(|r| !r.trim().is_empty())
        .filter_map(|r| {
            let (a, b) = r.trim().split_once('-').unwrap_or((r.trim(), r.trim()));
            Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
        })
        .collect();
    (first..=last).all(|p| ranges.iter().any(|(a, b)| (*a..=*b).contains(&p)))
}

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
pub fn proc_path(key: &str) -> String {
    format!("/proc/sys/{}", key.replace('.', "/"))
}

/// Reads sysctl `key` as text, trimmed.
pub fn read(key: &str) -> io::Result<String> {
    Ok(std::fs::read_to_string(proc_path(key))?.trim().to_string())
}

/// Reads sysctl `key` as an unsigned number.
pub fn read_u64(key: &str) -> io::Result<u64> {
    read(key)?
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{key}: {e}")))
}

/// Writes sysctl `key`.
pub fn write(key: &str, value: &str) -> io::Result<()> {
    std::fs::write(proc_path(key), value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_proc_sys_files() {
        assert_eq!(
            proc_path("net.ipv4.tcp_notsent_lowat"),
            "/proc/sys/net/ipv4/tcp_notsent_lowat"
        );
    }

    #[test]
    fn reserved_port_lists_are_checked_for_the_whole_range() {
        let ours = migration_reserved_ports();
        assert_eq!(ours, "49152-57343");
        assert!(reserves(&ours, MIGRATION_PORT_FIRST, MIGRATION_PORT_LAST));
        assert!(reserves(
            "22,49152-50000,50001-57343\n",
            MIGRATION_PORT_FIRST,
            MIGRATION_PORT_LAST
        ));
        assert!(!reserves("", MIGRATION_PORT_FIRST, MIGRATION_PORT_LAST));
        assert!(!reserves(
            "49152-57000",
            MIGRATION_PORT_FIRST,
            MIGRATION_PORT_LAST
        ));
        assert!(!reserves("junk", 1, 1));
        assert!(reserves("7", 7, 7));
    }

    #[test]
    fn a_readable_sysctl_reads_as_a_number() {
        // Present in every network namespace.
        assert!(read_u64("net.ipv4.tcp_notsent_lowat").is_ok());
        assert!(read_u64("net.ipv4.no_such_key").is_err());
    }
}
