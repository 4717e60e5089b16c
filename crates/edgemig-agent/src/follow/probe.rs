//! How far a client is from this site: the time a TCP connection attempt
//! to it takes to be answered (SYN → SYN-ACK or RST: one round trip), the
//! best of a few tries. Needs no listening service at the client (a closed
//! port answers with a reset) and no raw sockets; a client whose firewall
//! drops the attempt counts as unreachable.

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Port the probes go to (discard; usually closed, which is fine).
pub const PROBE_PORT: u16 = 9;
/// How long one try may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(1500);
/// Tries per target; the smallest RTT counts.
pub const TRIES: u32 = 3;

/// One try: the RTT in ms, or `None` without an answer.
pub fn tcp_rtt(target: IpAddr, timeout: Duration) -> Option<f64> {
    let started = Instant::now();
    let answered = match TcpStream::connect_timeout(&SocketAddr::new(target, PROBE_PORT), timeout) {
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionRefused,
    };
    answered.then(|| started.elapsed().as_secs_f64() * 1000.0)
}

/// The best of [`TRIES`] tries for each target, all targets at once.
pub async fn probe_all(targets: &[IpAddr]) -> Vec<Option<f64>> {
    let tasks: Vec<_> = targets
        .iter()
        .map(|&t| {
            tokio::task::spawn_blocking(move || {
                (0..TRIES)
                    .filter_map(|_| tcp_rtt(t, PROBE_TIMEOUT))
                    .min_by(f64::total_cmp)
            })
        })
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        out.push(task.await.ok().flatten());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_port_answers_and_an_unrouted_address_does_not() {
        // In a namespace of the test's own with only loopback: nothing
        // leaves the machine.
        let ns = edgemig_testkit::NetNs::new(&format!("{}p", edgemig_testkit::unique_prefix()));
        let (local, unrouted) = edgemig_netns::in_netns(ns.name(), || {
            (
                tcp_rtt("127.0.0.1".parse().unwrap(), PROBE_TIMEOUT),
                tcp_rtt("192.0.2.1".parse().unwrap(), Duration::from_millis(200)),
            )
        })
        .unwrap();
        assert!(local.is_some_and(|ms| ms >= 0.0), "{local:?}");
        assert_eq!(unrouted, None);
    }
}
