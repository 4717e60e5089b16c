//! MPTCP connections assembled from their subflows: the TCP sockets of one
//! connection share the local token.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::tcp::TcpSocket;

/// One MPTCP connection on this host, as seen through its subflows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MptcpConnection {
    /// The connection's local token (`token_local` of every subflow).
    pub token: u32,
    /// The peer's token for the connection, from the first subflow that
    /// reports one: only subflows this host joined do, so it is 0 on the
    /// passive side and while only the initial subflow exists.
    pub token_remote: u32,
    /// Its subflows, in the order they were listed.
    pub subflows: Vec<TcpSocket>,
}

impl MptcpConnection {
    /// The distinct local addresses of the subflows, sorted.
    pub fn local_ips(&self) -> Vec<IpAddr> {
        let mut ips: Vec<IpAddr> = self.subflows.iter().map(|s| s.local.ip()).collect();
        ips.sort();
        ips.dedup();
        ips
    }

    /// The distinct remote addresses of the subflows, sorted.
    pub fn remote_ips(&self) -> Vec<IpAddr> {
        let mut ips: Vec<IpAddr> = self.subflows.iter().map(|s| s.remote.ip()).collect();
        ips.sort();
        ips.dedup();
        ips
    }
}

/// Groups the MPTCP subflows among `sockets` into connections by local
/// token, sorted by token. Plain TCP sockets are left out, and so are
/// subflows whose token is 0: listeners, subflows still in the handshake,
/// and every subflow when the caller lacks `CAP_NET_ADMIN` (the kernel then
/// withholds tokens).
pub fn group_mptcp(sockets: &[TcpSocket]) -> Vec<MptcpConnection> {
    let mut by_token: BTreeMap<u32, MptcpConnection> = BTreeMap::new();
    for s in sockets {
        let Some(info) = s.mptcp else { continue };
        if info.token_local == 0 {
            continue;
        }
        let conn = by_token
            .entry(info.token_local)
            .or_insert_with(|| MptcpConnection {
                token: info.token_local,
                token_remote: 0,
                subflows: Vec::new(),
            });
        if conn.token_remote == 0 {
            conn.token_remote = info.token_remote;
        }
        conn.subflows.push(s.clone());
    }
    by_token.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::TcpState;
    use crate::subflow::SubflowInfo;

    fn sock(local: &str, token: Option<u32>) -> TcpSocket {
        TcpSocket {
            local: local.parse().unwrap(),
            remote: "10.0.0.9:7000".parse().unwrap(),
            state: TcpState::Established,
            inode: 0,
            uid: 0,
            interface: 0,
            cookie: 0,
            recv_queue: 0,
            send_queue: 0,
            stats: None,
            mptcp: token.map(|t| SubflowInfo {
                token_local: t,
                token_remote: t + 1,
                ..SubflowInfo::default()
            }),
        }
    }

    #[test]
    fn subflows_group_by_local_token() {
        let sockets = [
            sock("10.0.0.1:1000", Some(7)),
            sock("10.0.0.1:1001", None),
            sock("10.0.0.2:1002", Some(7)),
            sock("10.0.0.1:1003", Some(3)),
            sock("10.0.0.1:1004", Some(0)),
        ];
        let conns = group_mptcp(&sockets);
        assert_eq!(conns.len(), 2);
        assert_eq!(conns[0].token, 3);
        assert_eq!(conns[0].subflows.len(), 1);
        assert_eq!(conns[1].token, 7);
        assert_eq!(conns[1].token_remote, 8);
        assert_eq!(conns[1].subflows.len(), 2);
        assert_eq!(
            conns[1].local_ips(),
            [
                "10.0.0.1".parse::<IpAddr>().unwrap(),
                "10.0.0.2".parse().unwrap()
            ]
        );
        assert_eq!(conns[1].remote_ips().len(), 1);
    }
}
