//! Bytes per network path of one migration, from the kernel's per-subflow
//! TCP statistics (sock_diag, `tcpi_bytes_acked`): a thread samples the
//! sockets whose remote port is one of the migration's (memory stream,
//! NBD), and the subflows joined to those connections (same MPTCP token),
//! every [`SAMPLE`], remembers each subflow's last count (so subflows
//! that closed still count), and sums them by local address, which names
//! the path (the interface carrying that address, or the address itself).
//! It also keeps the slowest subflow's smoothed round trip, from which the
//! memory step budgets QEMU's part of the pause.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use edgemig_migration::PathBytes;
use edgemig_sockdiag::{Query, SockDiag, StateSet};

/// Sampling period.
pub const SAMPLE: Duration = Duration::from_millis(100);

#[derive(Debug, Default)]
struct Counts {
    ports: Vec<u16>,
    /// Socket cookie → (local address, bytes acknowledged).
    subflows: HashMap<u64, (IpAddr, u64)>,
    /// The slowest smoothed round trip among the subflows of the last
    /// sample that carried data, in µs.
    slowest_rtt_us: Option<u32>,
    error: Option<String>,
}

/// Samples the migration's subflows until stopped.
#[derive(Debug)]
pub struct PathMeter {
    counts: Arc<Mutex<Counts>>,
    names: Vec<(IpAddr, String)>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn lock(m: &Mutex<Counts>) -> std::sync::MutexGuard<'_, Counts> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn sample(diag: &mut SockDiag, counts: &Mutex<Counts>) {
    let ports = lock(counts).ports.clone();
    if ports.is_empty() {
        return;
    }
    let query = Query {
        states: StateSet::ALL,
        ..Query::default()
    };
    match diag.tcp_sockets(&query) {
        Ok(sockets) => {
            // A connection's joined subflows go to whatever port the peer
            // announced for its other addresses: they are the migration's
            // when they share an MPTCP token with a subflow to its ports.
            let tokens: HashSet<u32> = sockets
                .iter()
                .filter(|s| ports.contains(&s.remote.port()))
                .filter_map(|s| s.mptcp.map(|m| m.token_local))
                .filter(|t| *t != 0)
                .collect();
            let mut c = lock(counts);
            let mut slowest: Option<u32> = None;
            for s in sockets {
                let ours = ports.contains(&s.remote.port())
                    || s.mptcp.is_some_and(|m| tokens.contains(&m.token_local));
                if !ours {
                    continue;
                }
                if let Some(stats) = &s.stats {
                    let entry = c.subflows.entry(s.cookie).or_insert((s.local.ip(), 0));
                    entry.1 = entry.1.max(stats.bytes_acked);
                    if stats.bytes_acked > 0 && stats.rtt_us > 0 {
                        slowest = Some(slowest.map_or(stats.rtt_us, |r| r.max(stats.rtt_us)));
                    }
                }
            }
            if slowest.is_some() {
                c.slowest_rtt_us = slowest;
            }
        }
        Err(e) => lock(counts).error = Some(e.to_string()),
    }
}

impl PathMeter {
    /// Starts sampling; `names` maps local addresses to path names.
    pub fn start(names: Vec<(IpAddr, String)>) -> Self {
        let counts = Arc::new(Mutex::new(Counts::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let counts = counts.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("path-meter".into())
                .spawn(move || {
                    let mut diag = match SockDiag::open() {
                        Ok(d) => d,
                        Err(e) => {
                            lock(&counts).error = Some(e.to_string());
                            return;
                        }
                    };
                    while !stop.load(Ordering::Relaxed) {
                        sample(&mut diag, &counts);
                        std::thread::sleep(SAMPLE);
                    }
                    sample(&mut diag, &counts);
                })
                .ok()
        };
        Self {
            counts,
            names,
            stop,
            thread,
        }
    }

    /// Counts the subflows whose remote port is one of `ports` from now on.
    pub fn watch_ports(&self, ports: &[u16]) {
        lock(&self.counts).ports.extend_from_slice(ports);
    }

    /// Bytes per path so far, by path name.
    pub fn paths(&self) -> Vec<PathBytes> {
        let c = lock(&self.counts);
        let mut by_path: BTreeMap<String, u64> = BTreeMap::new();
        for (ip, bytes) in c.subflows.values() {
            *by_path.entry(self.name_of(*ip)).or_default() += bytes;
        }
        by_path
            .into_iter()
            .map(|(name, bytes)| PathBytes { name, bytes })
            .collect()
    }

    /// The slowest smoothed round trip among the migration's subflows
    /// that carried data, as last sampled; `None` before any did.
    pub fn slowest_rtt(&self) -> Option<Duration> {
        lock(&self.counts)
            .slowest_rtt_us
            .map(|us| Duration::from_micros(u64::from(us)))
    }

    /// Why sampling failed, if it did.
    pub fn error(&self) -> Option<String> {
        lock(&self.counts).error.clone()
    }

    fn name_of(&self, ip: IpAddr) -> String {
        self.names
            .iter()
            .find(|(a, _)| *a == ip)
            .map_or_else(|| ip.to_string(), |(_, n)| n.clone())
    }

    /// Takes a last sample, stops, and returns the bytes per path.
    pub fn finish(mut self) -> Vec<PathBytes> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.paths()
    }
}

impl Drop for PathMeter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    #[test]
    fn counts_the_bytes_of_watched_connections_by_local_address() {
        // Loopback in the test's namespace: a watched and an unwatched
        // connection; only the watched one counts, under its path name.
        let watched = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = watched.local_addr().unwrap().port();
        let meter = PathMeter::start(vec![("127.0.0.1".parse().unwrap(), "lo-path".into())]);
        meter.watch_ports(&[port]);
        let send = |l: &std::net::TcpListener, n: usize| {
            let mut c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
            let (mut s, _) = l.accept().unwrap();
            c.write_all(&vec![7u8; n]).unwrap();
            let mut buf = vec![0u8; n];
            s.read_exact(&mut buf).unwrap();
            s.write_all(b"k").unwrap();
            c.read_exact(&mut [0u8; 1]).unwrap();
            (c, s)
        };
        let _a = send(&watched, 1 << 20);
        let _b = send(&other, 3 << 20);
        let mut paths = Vec::new();
        for _ in 0..50 {
            paths = meter.paths();
            if paths.first().is_some_and(|p| p.bytes >= 1 << 20) {
                break;
            }
            std::thread::sleep(SAMPLE);
        }
        // Loopback's round trip: tens of µs, measured by the kernel.
        let rtt = meter.slowest_rtt();
        assert!(
            rtt.is_some_and(|r| r > Duration::ZERO && r < Duration::from_secs(1)),
            "{rtt:?}"
        );
        let paths = if paths.is_empty() {
            meter.finish()
        } else {
            paths
        };
        assert_eq!(paths.len(), 1, "{paths:?}");
        assert_eq!(paths[0].name, "lo-path");
        assert!(
            (1 << 20..3 << 20).contains(&paths[0].bytes),
            "only the watched connection counts: {paths:?}"
        );
    }
}
