//! A real MPTCP connection over loopback in a fresh namespace whose path
//! manager opens a second subflow from 127.0.0.2: both subflows must be
//! listed with one token and grouped into one connection, on both ends.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::TestNs;
use edgemig_mptcp::{EndpointFlags, Limits, MptcpPm, NewEndpoint};
use edgemig_sockdiag::{Query, SubflowFlags, TcpSocket, group_mptcp, tcp_sockets_in};
use socket2::{Domain, Protocol, Socket, Type};

/// Upper bound for the path manager to open the second subflow (it takes
/// milliseconds; the bound only keeps a broken kernel from hanging the test).
const SUBFLOW_DEADLINE: Duration = Duration::from_secs(30);

fn mptcp_socket() -> Socket {
    Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::MPTCP)).expect("MPTCP socket")
}

/// Polls `q` in `ns` until `n` MPTCP subflows are established.
fn wait_for_subflows(ns: &str, q: &Query, n: usize) -> Vec<TcpSocket> {
    let deadline = Instant::now() + SUBFLOW_DEADLINE;
    loop {
        let subflows: Vec<TcpSocket> = tcp_sockets_in(ns, q)
            .expect("list")
            .into_iter()
            .filter(|s| s.mptcp.is_some_and(|m| m.token_local != 0))
            .collect();
        if subflows.len() >= n || Instant::now() > deadline {
            return subflows;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn mptcp_subflows_share_a_token_and_group_into_one_connection() {
    let ns = TestNs::new();
    let ip1: IpAddr = "127.0.0.1".parse().unwrap();
    let ip2: IpAddr = "127.0.0.2".parse().unwrap();

    let (server_addr, listener, mut client, mut server) = edgemig_netns::in_netns(&ns.name, || {
        let mut pm = MptcpPm::open().expect("path manager");
        pm.set_limits(Limits {
            subflows: 2,
            add_addr_accepted: 0,
        })
        .expect("limits");
        pm.add_endpoint(&NewEndpoint::new(ip2, EndpointFlags::SUBFLOW))
            .expect("subflow endpoint");

        let listener = mptcp_socket();
        listener
            .bind(&SocketAddr::new(ip1, 0).into())
            .expect("bind");
        listener.listen(8).expect("listen");
        let server_addr = listener
            .local_addr()
            .expect("addr")
            .as_socket()
            .expect("inet");
        let client = mptcp_socket();
        client.connect(&server_addr.into()).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        let client: TcpStream = client.into();
        let server: TcpStream = server.into();
        (server_addr, listener, client, server)
    })
    .expect("netns");

    // Data both ways completes the MPTCP handshake, after which the client's
    // path manager joins a subflow from 127.0.0.2.
    client.write_all(b"hello").unwrap();
    let mut buf = [0u8; 5];
    server.read_exact(&mut buf).unwrap();
    server.write_all(b"world").unwrap();
    client.read_exact(&mut buf).unwrap();

    let port = server_addr.port();
    let client_side = wait_for_subflows(&ns.name, &Query::established().with_remote_port(port), 2);
    let server_side = wait_for_subflows(&ns.name, &Query::established().with_local_port(port), 2);
    assert_eq!(client_side.len(), 2, "client subflows: {client_side:#?}");
    assert_eq!(server_side.len(), 2, "server subflows: {server_side:#?}");

    // Client: one token, two local addresses, the same server address.
    let c0 = client_side[0].mptcp.unwrap();
    let c1 = client_side[1].mptcp.unwrap();
    assert_eq!(c0.token_local, c1.token_local);
    let mut locals: Vec<IpAddr> = client_side.iter().map(|s| s.local.ip()).collect();
    locals.sort();
    assert_eq!(locals, [ip1, ip2]);
    assert!(client_side.iter().all(|s| s.remote == server_addr));
    for s in &client_side {
        let m = s.mptcp.unwrap();
        let st = s.stats.expect("tcp_info");
        assert!(st.bytes_acked > 0 || s.local.ip() == ip2, "{s:#?}");
        if s.local.ip() == ip1 {
            assert_eq!(m.id_local, 0, "the initial subflow has local id 0");
            assert!(m.flags.contains(SubflowFlags::MCAP_LOC), "{}", m.flags);
        } else {
            assert_ne!(m.id_local, 0, "a joined subflow has its endpoint's id");
            assert!(m.flags.contains(SubflowFlags::JOIN_LOC), "{}", m.flags);
        }
    }

    let conns = group_mptcp(&client_side);
    assert_eq!(conns.len(), 1);
    assert_eq!(conns[0].token, c0.token_local);
    assert_eq!(conns[0].subflows.len(), 2);
    assert_eq!(conns[0].local_ips(), [ip1, ip2]);
    assert_eq!(conns[0].remote_ips(), [ip1]);

    // Server: the peer's view of the same connection. Only the subflow the
    // client joined carries the peer's token, so the client knows the
    // server's token and not the other way round.
    let server_conns = group_mptcp(&server_side);
    assert_eq!(server_conns.len(), 1);
    assert_eq!(server_conns[0].subflows.len(), 2);
    assert_eq!(server_conns[0].token, conns[0].token_remote);
    assert_ne!(conns[0].token, server_conns[0].token);

    // Everything at once: the two connections' ends, and the MPTCP
    // listener's subflow (LISTEN, token 0) is never grouped.
    let everything = tcp_sockets_in(&ns.name, &Query::default()).expect("list all");
    assert!(
        everything
            .iter()
            .any(|s| s.local.port() == port && s.mptcp.is_some_and(|m| m.token_local == 0)),
        "the MPTCP listener's subflow is listed: {everything:#?}"
    );
    assert_eq!(group_mptcp(&everything).len(), 2);
    drop((listener, client, server));
}
