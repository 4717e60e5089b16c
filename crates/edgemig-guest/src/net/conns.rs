//! Established TCP connections by local IPv4 address, from
//! `/proc/thread-self/net/tcp` and `tcp6` (v4-mapped addresses): MPTCP
//! subflows are TCP sockets and are listed there, one line each.
//! Loopback (127.0.0.0/8) is left out.

use std::collections::BTreeMap;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};

use edgemig_guest_proto::NetReport;

/// `TCP_ESTABLISHED` as `/proc/net/tcp` prints it.
const ESTABLISHED: &str = "01";

/// Errors of connection counting.
#[derive(Debug, thiserror::Error)]
pub enum ConnsError {
    /// The table could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// File.
        path: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// Parses one `%08X` word of `/proc/net/tcp*`: the kernel prints the
/// network-order `__be32` as a host-order number.
fn word(hex: &str) -> Option<[u8; 4]> {
    u32::from_str_radix(hex, 16).ok().map(u32::to_ne_bytes)
}

/// The local IPv4 address of an `ADDR:PORT` field (8 or 32 hex digits).
fn local_v4(field: &str) -> Option<Ipv4Addr> {
    let (addr, _port) = field.split_once(':')?;
    match addr.len() {
        8 => word(addr).map(Ipv4Addr::from),
        32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_exact_mut(4).enumerate() {
                chunk.copy_from_slice(&word(addr.get(i * 8..i * 8 + 8)?)?);
            }
            Ipv6Addr::from(bytes).to_ipv4_mapped()
        }
        _ => None,
    }
}

/// Adds the established, non-loopback connections of one table to `counts`.
pub fn count_into(table: &str, counts: &mut BTreeMap<Ipv4Addr, u32>) {
    for line in table.lines().skip(1) {
        let mut fields = line.split_whitespace();
        let (Some(_sl), Some(local), Some(_remote), Some(state)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if state != ESTABLISHED {
            continue;
        }
        if let Some(addr) = local_v4(local).filter(|a| !a.is_loopback()) {
            *counts.entry(addr).or_default() += 1;
        }
    }
}

/// Turns counts into the reply, sorted by address.
pub fn report(counts: BTreeMap<Ipv4Addr, u32>) -> NetReport {
    NetReport {
        by_address: counts
            .into_iter()
            .map(|(a, n)| (a.to_string(), n))
            .collect(),
    }
}

/// Counts the calling thread's namespace's established TCP connections.
pub fn net_status() -> Result<NetReport, ConnsError> {
    let mut counts = BTreeMap::new();
    for path in ["/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"] {
        match std::fs::read_to_string(path) {
            Ok(text) => count_into(&text, &mut counts),
            // No IPv6 in this kernel: nothing to count there.
            Err(e) if e.kind() == io::ErrorKind::NotFound && path.ends_with('6') => {}
            Err(source) => return Err(ConnsError::Read { path, source }),
        }
    }
    Ok(report(counts))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1587 1 00000000da7ff306 100 0 0 10 0
   1: 0100007F:A8F5 0100007F:DAE4 01 00000000:00000000 00:00000000 00000000     0        0 2001 1 00000000e7a3c083 20 4 30 10 -1
   2: 05000A0A:1F90 0A00000A:C350 01 00000000:00000000 02:000AFD53 00000000     0        0 2002 2 0000000071a58dc3 20 4 30 10 -1
   3: 05000A0A:1F90 0B00000A:C351 01 00000000:00000000 02:000AFD53 00000000     0        0 2003 2 0000000085e90281 20 4 30 10 -1
   4: 0500140A:1F90 0A00000A:C352 01 00000000:00000000 02:000AFD53 00000000     0        0 2004 2 0000000085e90282 20 4 30 10 -1
   5: 0500140A:1F90 0A00000A:C353 06 00000000:00000000 03:000005C2 00000000     0        0 0 3 0000000085e90283
   6: garbage
";

    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0000000000000000FFFF00000500140A:1F90 0000000000000000FFFF00000A00000A:C354 01 00000000:00000000 00:00000000 00000000     0        0 3001 1 0000000000000000 20 4 30 10 -1
   1: 00000000000000000000000001000000:1F90 00000000000000000000000001000000:C355 01 00000000:00000000 00:00000000 00000000     0        0 3002 1 0000000000000000 20 4 30 10 -1
";

    #[test]
    #[cfg(target_endian = "little")]
    fn counts_established_by_local_address() {
        let mut counts = BTreeMap::new();
        count_into(TCP, &mut counts);
        count_into(TCP6, &mut counts);
        let rep = report(counts);
        assert_eq!(
            rep.by_address,
            vec![("10.10.0.5".to_string(), 2), ("10.20.0.5".to_string(), 2)]
        );
    }

    #[test]
    fn empty_table_counts_nothing() {
        let mut counts = BTreeMap::new();
        count_into("", &mut counts);
        count_into("header only\n", &mut counts);
        assert!(report(counts).by_address.is_empty());
    }
}
