//! Exact connection accounting: the guest's established TCP sockets listed
//! through sock_diag ([`edgemig_sockdiag`]), MPTCP subflows grouped into
//! their connections by token, each connection reported with its peer,
//! its local addresses, its best RTT and its byte count ([`NetReport`]).
//!
//! Loopback, listening and not-established sockets are left out. Grouping
//! needs the MPTCP tokens, which the kernel only reports to a caller with
//! `CAP_NET_ADMIN` (the agent runs as root in the guest); a subflow without
//! a token is reported as a connection of its own.

use std::collections::BTreeMap;
use std::net::IpAddr;

use edgemig_guest_proto::{ConnectionInfo, MAX_CONNECTIONS, NetReport};
use edgemig_sockdiag::{Query, SockDiagError, SubflowFlags, TcpSocket, group_mptcp};

/// `CAP_NET_ADMIN`'s bit in the capability sets of `/proc/self/status`.
const CAP_NET_ADMIN_BIT: u32 = 12;

/// Errors of connection accounting.
#[derive(Debug, thiserror::Error)]
pub enum ConnsError {
    /// The sockets could not be listed.
    #[error(
        "Cannot list the guest's TCP sockets through sock_diag (needs the inet_diag and tcp_diag modules)"
    )]
    List(#[source] SockDiagError),
}

/// Accounts for the calling thread's namespace's established TCP
/// connections.
pub fn net_status() -> Result<NetReport, ConnsError> {
    let sockets = edgemig_sockdiag::tcp_sockets(&Query::established()).map_err(ConnsError::List)?;
    let mut r = report(&sockets, MAX_CONNECTIONS);
    r.mptcp_counters = std::fs::read_to_string("/proc/net/netstat")
        .map(|t| mptcp_counters(&t))
        .unwrap_or_default();
    Ok(r)
}

/// The non-zero `MPTcpExt` counters of a `/proc/net/netstat` text (pairs
/// of lines: names, then values).
pub fn mptcp_counters(netstat: &str) -> Vec<(String, u64)> {
    let lines: Vec<&str> = netstat.lines().collect();
    lines
        .windows(2)
        .filter(|w| w[0].starts_with("MPTcpExt:") && w[1].starts_with("MPTcpExt:"))
        .flat_map(|w| {
            w[0].split_whitespace()
                .skip(1)
                .zip(w[1].split_whitespace().skip(1))
                .filter_map(|(n, v)| Some((n.to_string(), v.parse::<u64>().ok()?)))
                .filter(|(_, v)| *v > 0)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Whether this process has `CAP_NET_ADMIN` (needed for MPTCP tokens),
/// from the `CapEff` line of `/proc/self/status`; false if unreadable.
pub fn has_net_admin() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| cap_eff_has(&s, CAP_NET_ADMIN_BIT))
        .unwrap_or(false)
}

/// Whether the `CapEff` mask in a `/proc/PID/status` text has bit `bit`.
fn cap_eff_has(status: &str, bit: u32) -> Option<bool> {
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))?
        .trim();
    let mask = u64::from_str_radix(hex, 16).ok()?;
    Some(mask & (1u64 << bit) != 0)
}

/// Whether a socket counts: established and not on loopback.
fn counted(s: &TcpSocket) -> bool {
    s.state == edgemig_sockdiag::TcpState::Established && !s.local.ip().is_loopback()
}

/// Whether a subflow is the connection's initial one (MP_CAPABLE).
fn is_initial(s: &TcpSocket) -> bool {
    s.mptcp.is_some_and(|m| {
        m.flags.contains(SubflowFlags::MCAP_REM) || m.flags.contains(SubflowFlags::MCAP_LOC)
    })
}

/// The report entry of one connection made of `subflows` (at least one).
fn connection(mptcp: bool, subflows: &[&TcpSocket]) -> Option<ConnectionInfo> {
    let first = subflows
        .iter()
        .find(|s| is_initial(s))
        .or_else(|| subflows.first())?;
    let mut locals: Vec<IpAddr> = subflows.iter().map(|s| s.local.ip()).collect();
    locals.sort();
    locals.dedup();
    let rtt_us = subflows
        .iter()
        .filter_map(|s| s.stats.map(|st| st.rtt_us))
        .filter(|r| *r > 0)
        .min()
        .unwrap_or(0);
    let bytes = subflows
        .iter()
        .filter_map(|s| s.stats)
        .map(|st| st.bytes_acked.saturating_add(st.bytes_received))
        .fold(0u64, u64::saturating_add);
    Some(ConnectionInfo {
        mptcp,
        remote: first.remote.ip().to_string(),
        local_addresses: locals.iter().map(IpAddr::to_string).collect(),
        subflows: u32::try_from(subflows.len()).unwrap_or(u32::MAX),
        rtt_ms: f64::from(rtt_us) / 1000.0,
        bytes,
    })
}

/// Builds the report from a socket listing: `by_address` over every
/// counted socket, `connections` capped at `cap` (most bytes first),
/// `sole_address` over all connections.
pub fn report(sockets: &[TcpSocket], cap: usize) -> NetReport {
    let counted: Vec<TcpSocket> = sockets.iter().filter(|s| counted(s)).cloned().collect();

    let mut by_address: BTreeMap<IpAddr, u32> = BTreeMap::new();
    for s in &counted {
        *by_address.entry(s.local.ip()).or_default() += 1;
    }

    let mut conns: Vec<ConnectionInfo> = group_mptcp(&counted)
        .iter()
        .filter_map(|c| connection(true, &c.subflows.iter().collect::<Vec<_>>()))
        .collect();
    // Plain TCP, and MPTCP subflows without a token (no CAP_NET_ADMIN, or
    // the handshake still running): one connection each.
    conns.extend(
        counted
            .iter()
            .filter(|s| s.mptcp.is_none_or(|m| m.token_local == 0))
            .filter_map(|s| connection(s.mptcp.is_some(), &[s])),
    );

    let mut sole: BTreeMap<IpAddr, u32> = BTreeMap::new();
    for c in &conns {
        if let [only] = c.local_addresses.as_slice()
            && let Ok(ip) = only.parse::<IpAddr>()
        {
            *sole.entry(ip).or_default() += 1;
        }
    }

    let total = u32::try_from(conns.len()).unwrap_or(u32::MAX);
    conns.sort_by(|a, b| {
        b.bytes
            .cmp(&a.bytes)
            .then_with(|| a.remote.cmp(&b.remote))
            .then_with(|| a.local_addresses.cmp(&b.local_addresses))
    });
    conns.truncate(cap);

    let pairs = |m: BTreeMap<IpAddr, u32>| m.into_iter().map(|(a, n)| (a.to_string(), n)).collect();
    NetReport {
        by_address: pairs(by_address),
        connections: conns,
        connections_total: total,
        sole_address: pairs(sole),
        mptcp_counters: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mptcp_counters_are_read_from_netstat() {
        let text = "TcpExt: A B\nTcpExt: 1 2\nMPTcpExt: MPCapableSYNRX MPJoinSynRx JoinRejected\nMPTcpExt: 3 0 7\n";
        assert_eq!(
            mptcp_counters(text),
            vec![
                ("MPCapableSYNRX".to_string(), 3),
                ("JoinRejected".to_string(), 7)
            ]
        );
    }
    use edgemig_sockdiag::{SubflowInfo, TcpState, TcpStats};

    struct Sock {
        local: &'static str,
        remote: &'static str,
        state: TcpState,
        token: Option<u32>,
        flags: SubflowFlags,
        rtt_us: u32,
        acked: u64,
        received: u64,
    }

    impl Sock {
        fn tcp(local: &'static str, remote: &'static str) -> Self {
            Self {
                local,
                remote,
                state: TcpState::Established,
                token: None,
                flags: SubflowFlags::default(),
                rtt_us: 1000,
                acked: 0,
                received: 0,
            }
        }

        fn subflow(local: &'static str, remote: &'static str, token: u32, initial: bool) -> Self {
            Self {
                token: Some(token),
                flags: if initial {
                    SubflowFlags::MCAP_REM
                } else {
                    SubflowFlags::JOIN_REM
                },
                ..Self::tcp(local, remote)
            }
        }

        fn rtt(self, rtt_us: u32) -> Self {
            Self { rtt_us, ..self }
        }

        fn bytes(self, acked: u64, received: u64) -> Self {
            Self {
                acked,
                received,
                ..self
            }
        }

        fn state(self, state: TcpState) -> Self {
            Self { state, ..self }
        }

        fn build(&self) -> TcpSocket {
            let mut stats = TcpStats::default();
            stats.rtt_us = self.rtt_us;
            stats.bytes_acked = self.acked;
            stats.bytes_received = self.received;
            TcpSocket {
                local: self.local.parse().unwrap(),
                remote: self.remote.parse().unwrap(),
                state: self.state,
                inode: 0,
                uid: 0,
                interface: 0,
                cookie: 0,
                recv_queue: 0,
                send_queue: 0,
                stats: Some(stats),
                mptcp: self.token.map(|t| SubflowInfo {
                    token_local: t,
                    flags: self.flags,
                    ..SubflowInfo::default()
                }),
            }
        }
    }

    fn build(socks: Vec<Sock>) -> Vec<TcpSocket> {
        socks.iter().map(Sock::build).collect()
    }

    const OLD: &str = "10.10.0.2";
    const NEW: &str = "10.20.0.5";

    #[test]
    fn subflows_group_into_connections_with_best_rtt_and_summed_bytes() {
        let sockets = build(vec![
            // A client that moved: initial subflow on OLD, joined on NEW.
            Sock::subflow("10.20.0.5:7000", "10.99.0.7:40002", 9, false)
                .rtt(900)
                .bytes(100, 50),
            Sock::subflow("10.10.0.2:7000", "10.99.0.2:40001", 9, true)
                .rtt(30_000)
                .bytes(1000, 10),
            // A client still on OLD only.
            Sock::subflow("10.10.0.2:7000", "10.99.0.3:40003", 4, true)
                .rtt(25_000)
                .bytes(10, 10),
            // Plain TCP on OLD.
            Sock::tcp("10.10.0.2:7000", "10.99.0.4:40004").bytes(7, 0),
            // Left out: loopback, listener, closing.
            Sock::tcp("127.0.0.1:7000", "127.0.0.1:40005").bytes(1 << 40, 0),
            Sock::subflow("0.0.0.0:7000", "0.0.0.0:0", 0, false).state(TcpState::Listen),
            Sock::tcp("10.10.0.2:7000", "10.99.0.5:40006").state(TcpState::FinWait1),
        ]);
        let rep = report(&sockets, MAX_CONNECTIONS);
        assert_eq!(
            rep.by_address,
            vec![(OLD.to_string(), 3), (NEW.to_string(), 1)]
        );
        assert_eq!(rep.connections_total, 3);
        assert_eq!(rep.connections.len(), 3);

        let moved = &rep.connections[0];
        assert!(moved.mptcp);
        assert_eq!(moved.remote, "10.99.0.2", "the initial subflow's peer");
        assert_eq!(
            moved.local_addresses,
            vec![OLD.to_string(), NEW.to_string()]
        );
        assert_eq!(moved.subflows, 2);
        assert_eq!(moved.rtt_ms, 0.9);
        assert_eq!(moved.bytes, 1160);

        let stuck = &rep.connections[1];
        assert!(stuck.mptcp);
        assert_eq!(stuck.local_addresses, vec![OLD.to_string()]);
        assert_eq!(stuck.rtt_ms, 25.0);
        assert_eq!(stuck.bytes, 20);

        let plain = &rep.connections[2];
        assert!(!plain.mptcp);
        assert_eq!(plain.remote, "10.99.0.4");
        assert_eq!(plain.subflows, 1);
        assert_eq!(plain.bytes, 7);

        // Two connections are on OLD only; none on NEW only.
        assert_eq!(rep.sole_address, vec![(OLD.to_string(), 2)]);
    }

    #[test]
    fn first_subflow_gives_the_remote_once_the_initial_is_gone() {
        let sockets = build(vec![
            Sock::subflow("10.20.0.5:7000", "10.99.0.8:40010", 3, false).rtt(0),
            Sock::subflow("10.20.0.5:7000", "10.99.0.9:40011", 3, false).rtt(0),
        ]);
        let rep = report(&sockets, MAX_CONNECTIONS);
        assert_eq!(rep.connections.len(), 1);
        let c = &rep.connections[0];
        assert_eq!(c.remote, "10.99.0.8");
        assert_eq!(c.rtt_ms, 0.0, "no RTT sample yet");
        assert_eq!(rep.sole_address, vec![(NEW.to_string(), 1)]);
    }

    #[test]
    fn tokenless_subflows_count_one_each() {
        // Without CAP_NET_ADMIN the kernel reports token 0.
        let sockets = build(vec![
            Sock::subflow("10.10.0.2:7000", "10.99.0.2:1", 0, true),
            Sock::subflow("10.20.0.5:7000", "10.99.0.2:2", 0, false),
        ]);
        let rep = report(&sockets, MAX_CONNECTIONS);
        assert_eq!(rep.connections_total, 2);
        assert!(rep.connections.iter().all(|c| c.mptcp && c.subflows == 1));
    }

    #[test]
    fn the_list_is_capped_keeping_the_heaviest() {
        let sockets: Vec<TcpSocket> = (0..10u16)
            .map(|i| {
                let mut s = Sock::tcp("10.10.0.2:7000", "10.99.0.2:1").build();
                s.remote.set_port(1000 + i);
                if let Some(st) = s.stats.as_mut() {
                    st.bytes_received = u64::from(i) * 100;
                }
                s
            })
            .collect();
        let rep = report(&sockets, 3);
        assert_eq!(rep.connections_total, 10);
        let bytes: Vec<u64> = rep.connections.iter().map(|c| c.bytes).collect();
        assert_eq!(bytes, vec![900, 800, 700]);
        assert_eq!(rep.sole_address, vec![(OLD.to_string(), 10)], "not capped");
        assert_eq!(rep.by_address, vec![(OLD.to_string(), 10)]);
    }

    #[test]
    fn empty_listing_reports_nothing() {
        let rep = report(&[], MAX_CONNECTIONS);
        assert!(rep.by_address.is_empty() && rep.connections.is_empty());
        assert_eq!(rep.connections_total, 0);
    }

    #[test]
    fn cap_eff_parsing() {
        let status = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(cap_eff_has(status, CAP_NET_ADMIN_BIT), Some(true));
        let none = "CapEff:\t0000000000000000\n";
        assert_eq!(cap_eff_has(none, CAP_NET_ADMIN_BIT), Some(false));
        assert_eq!(cap_eff_has("nothing", CAP_NET_ADMIN_BIT), None);
    }
}
