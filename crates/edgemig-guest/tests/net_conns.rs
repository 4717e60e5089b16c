//! NetStatus against real connections: a "guest" namespace serving MPTCP
//! and TCP to a "client" namespace over two veth links. The guest
//! announces its second address (a `signal` endpoint), the client joins a
//! subflow to it, and the report must show one MPTCP connection on both
//! addresses and one TCP connection on the first, with RTTs and bytes;
//! loopback connections and listeners are left out.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::{Ns, is_root, link};
use edgemig_guest::net;
use edgemig_guest_proto::NetReport;
use edgemig_mptcp::{EndpointFlags, Limits, MptcpPm, NewEndpoint};
use socket2::{Domain, Protocol, Socket, Type};

/// Upper bound for the client to join the announced address (it takes
/// milliseconds; the bound only keeps a broken kernel from hanging).
const DEADLINE: Duration = Duration::from_secs(30);

fn mptcp_socket() -> Socket {
    Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::MPTCP)).expect("MPTCP socket")
}

/// Sends and echoes a few KiB each way so both ends have RTT samples and
/// byte counts.
fn exchange(client: &mut TcpStream, server: &mut TcpStream) {
    let data = vec![7u8; 16 << 10];
    let mut buf = vec![0u8; data.len()];
    client.write_all(&data).unwrap();
    server.read_exact(&mut buf).unwrap();
    server.write_all(&buf).unwrap();
    client.read_exact(&mut buf).unwrap();
}

#[test]
fn net_status_groups_mptcp_subflows_and_reports_rtt_and_bytes() {
    if !is_root() {
        return;
    }
    let guest = Ns::new();
    let client = Ns::new();
    link(&guest, "gv0", &client, "cv0", "10.1.0");
    link(&guest, "gv1", &client, "cv1", "10.2.0");
    let old: IpAddr = "10.1.0.2".parse().unwrap();

    // Guest: announces 10.2.0.2; serves MPTCP and TCP on 10.1.0.2; also
    // holds a loopback connection, which must not count.
    let (mptcp_listener, tcp_listener, lo) = guest.run(|| {
        let mut pm = MptcpPm::open().unwrap();
        pm.set_limits(net::MPTCP_LIMITS).unwrap();
        pm.add_endpoint(&NewEndpoint::new(
            "10.2.0.2".parse().unwrap(),
            EndpointFlags::SIGNAL,
        ))
        .unwrap();
        // On every address, as the agent's service: the joined subflow
        // arrives at the announced address.
        let m = mptcp_socket();
        m.bind(&SocketAddr::new(IpAddr::from([0, 0, 0, 0]), 0).into())
            .unwrap();
        m.listen(8).unwrap();
        let t = TcpListener::bind(SocketAddr::new(old, 0)).unwrap();
        let lo_l = TcpListener::bind("127.0.0.1:0").unwrap();
        let lo_c = TcpStream::connect(lo_l.local_addr().unwrap()).unwrap();
        let (lo_s, _) = lo_l.accept().unwrap();
        (m, t, (lo_l, lo_c, lo_s))
    });
    let port = mptcp_listener
        .local_addr()
        .unwrap()
        .as_socket()
        .unwrap()
        .port();
    let mptcp_addr = SocketAddr::new(old, port);
    let tcp_addr = tcp_listener.local_addr().unwrap();

    // Client: accepts the announcement and joins a subflow to it.
    let (mut mc, mut tc) = client.run(|| {
        MptcpPm::open()
            .unwrap()
            .set_limits(Limits {
                subflows: 2,
                add_addr_accepted: 2,
            })
            .unwrap();
        let m = mptcp_socket();
        m.connect(&mptcp_addr.into()).unwrap();
        let t = TcpStream::connect(tcp_addr).unwrap();
        (TcpStream::from(m), t)
    });
    let (ms, _) = mptcp_listener.accept().unwrap();
    let mut ms = TcpStream::from(ms);
    let (mut ts, _) = tcp_listener.accept().unwrap();
    exchange(&mut mc, &mut ms);
    exchange(&mut tc, &mut ts);

    let deadline = Instant::now() + DEADLINE;
    let rep: NetReport = loop {
        let rep = guest.run(|| net::net_status().unwrap());
        let joined = rep
            .connections
            .iter()
            .any(|c| c.mptcp && c.local_addresses.len() == 2);
        if joined || Instant::now() > deadline {
            break rep;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // Data over the joined subflow too, now that it exists.
    exchange(&mut mc, &mut ms);
    let rep = {
        let after = guest.run(|| net::net_status().unwrap());
        eprintln!("{after:#?}");
        assert_eq!(after.connections.len(), rep.connections.len());
        after
    };

    assert_eq!(rep.connections_total, 2, "{rep:#?}");
    assert_eq!(rep.connections.len(), 2);
    let m = rep
        .connections
        .iter()
        .find(|c| c.mptcp)
        .expect("the MPTCP connection");
    assert_eq!(m.remote, "10.1.0.1");
    assert_eq!(
        m.local_addresses,
        vec!["10.1.0.2".to_string(), "10.2.0.2".to_string()]
    );
    assert_eq!(m.subflows, 2);
    assert!(m.rtt_ms > 0.0, "{m:?}");
    assert!(m.bytes >= 2 * (32 << 10), "{m:?}");

    let t = rep
        .connections
        .iter()
        .find(|c| !c.mptcp)
        .expect("the TCP connection");
    assert_eq!(t.remote, "10.1.0.1");
    assert_eq!(t.local_addresses, vec!["10.1.0.2".to_string()]);
    assert_eq!(t.subflows, 1);
    assert!(t.rtt_ms > 0.0, "{t:?}");
    assert!(t.bytes >= 2 * (16 << 10), "{t:?}");

    // Only the TCP connection is still on the old address alone.
    assert_eq!(rep.sole_address, vec![("10.1.0.2".to_string(), 1)]);
    assert_eq!(
        rep.by_address,
        vec![("10.1.0.2".to_string(), 2), ("10.2.0.2".to_string(), 1)]
    );
    drop((mc, ms, tc, ts, lo, mptcp_listener, tcp_listener));
}
