//! Plain TCP over loopback in a fresh namespace: addresses, states, byte
//! counters (cross-checked with `getsockopt(TCP_INFO)`), port and family
//! filters, and the typed error for a missing namespace.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;

use common::{TestNs, unique_name};
use edgemig_sockdiag::{
    Family, Query, SockDiag, SockDiagError, StateSet, TcpSocket, TcpState, group_mptcp,
    tcp_sockets_in,
};

const PAYLOAD: usize = 1 << 20;

/// A loopback connection (listener, client, server), made on the calling
/// thread's namespace.
fn connect_pair() -> (TcpListener, TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    (listener, client, server)
}

fn find<'a>(list: &'a [TcpSocket], s: &TcpStream) -> &'a TcpSocket {
    let local = s.local_addr().expect("local");
    let remote = s.peer_addr().expect("peer");
    let hits: Vec<_> = list
        .iter()
        .filter(|x| x.local == local && x.remote == remote)
        .collect();
    assert_eq!(hits.len(), 1, "{local} -> {remote} in {list:#?}");
    hits[0]
}

fn kernel_tcp_info(s: &TcpStream) -> libc::tcp_info {
    // SAFETY: tcp_info is plain old data; all-zero is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: the fd is open for the call; `info` and `len` are valid for
    // writes of `len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &raw mut len,
        )
    };
    assert_eq!(rc, 0, "getsockopt(TCP_INFO)");
    info
}

fn ports(list: &[TcpSocket]) -> Vec<(u16, u16, TcpState)> {
    let mut v: Vec<_> = list
        .iter()
        .map(|s| (s.local.port(), s.remote.port(), s.state))
        .collect();
    v.sort();
    v
}

#[test]
fn plain_tcp_counters_addresses_and_filters() {
    let ns = TestNs::new();
    let ((l1, mut client, mut server), (l2, c2, s2)) =
        edgemig_netns::in_netns(&ns.name, || (connect_pair(), connect_pair())).expect("netns");

    // 1 MiB client -> server; the server's one-byte reply carries the ACK
    // of everything, so once the client has read it, all is acknowledged.
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; PAYLOAD];
        server.read_exact(&mut buf).expect("read payload");
        server.write_all(b"k").expect("reply");
        server
    });
    client
        .write_all(&vec![7u8; PAYLOAD])
        .expect("write payload");
    let mut reply = [0u8; 1];
    client.read_exact(&mut reply).expect("read reply");
    let server = reader.join().expect("reader thread");

    let p1 = l1.local_addr().unwrap().port();
    let p2 = l2.local_addr().unwrap().port();
    let est = tcp_sockets_in(&ns.name, &Query::established()).expect("list");
    assert_eq!(est.len(), 4, "only this test's sockets live here: {est:#?}");

    let c = find(&est, &client);
    let s = find(&est, &server);
    for sock in [c, s] {
        assert_eq!(sock.state, TcpState::Established);
        assert!(sock.mptcp.is_none(), "plain TCP has no ULP info");
        assert_ne!(sock.inode, 0, "a std socket has a file");
        assert_ne!(sock.cookie, 0);
    }
    let cs = c.stats.expect("client tcp_info");
    let ss = s.stats.expect("server tcp_info");
    assert!(cs.bytes_acked >= PAYLOAD as u64, "{cs:?}");
    assert!(cs.bytes_sent >= PAYLOAD as u64, "{cs:?}");
    assert_eq!(cs.bytes_received, 1);
    assert!(ss.bytes_received >= PAYLOAD as u64, "{ss:?}");
    assert!(cs.snd_mss > 0 && cs.rto_us >= 200_000, "{cs:?}");

    // The client's counters no longer move: they equal what the kernel
    // reports to the socket's owner through getsockopt.
    let k = kernel_tcp_info(&client);
    assert_eq!(cs.bytes_acked, k.tcpi_bytes_acked);
    assert_eq!(cs.bytes_received, k.tcpi_bytes_received);
    assert_eq!(cs.bytes_sent, k.tcpi_bytes_sent);
    assert_eq!(cs.min_rtt_us, k.tcpi_min_rtt);
    assert_eq!(cs.data_segs_out, k.tcpi_data_segs_out);
    assert_eq!(cs.snd_mss, k.tcpi_snd_mss);

    // Port filters pick exactly the expected sockets.
    let by_local = tcp_sockets_in(&ns.name, &Query::established().with_local_port(p1)).unwrap();
    assert_eq!(by_local.len(), 1);
    assert_eq!(by_local[0].local, server.local_addr().unwrap());
    let by_remote = tcp_sockets_in(&ns.name, &Query::established().with_remote_port(p1)).unwrap();
    assert_eq!(by_remote.len(), 1);
    assert_eq!(by_remote[0].local, client.local_addr().unwrap());
    let c2_port = c2.local_addr().unwrap().port();
    let both = tcp_sockets_in(
        &ns.name,
        &Query::established()
            .with_local_port(c2_port)
            .with_remote_port(p2),
    )
    .unwrap();
    assert_eq!(ports(&both), [(c2_port, p2, TcpState::Established)]);
    assert_eq!(find(&both, &c2).remote, s2.local_addr().unwrap());

    // States: every state adds the two listeners; LISTEN alone is just them.
    let all = Query {
        states: StateSet::ALL,
        ..Query::default()
    };
    assert_eq!(tcp_sockets_in(&ns.name, &all).unwrap().len(), 6);
    let listeners = tcp_sockets_in(
        &ns.name,
        &Query {
            states: StateSet::LISTEN,
            ..Query::default()
        },
    )
    .unwrap();
    let unspecified: SocketAddr = "0.0.0.0:0".parse().unwrap();
    let mut expected = vec![(p1, 0, TcpState::Listen), (p2, 0, TcpState::Listen)];
    expected.sort();
    assert_eq!(ports(&listeners), expected);
    assert!(listeners.iter().all(|l| l.remote == unspecified));
    let l1_with_server = tcp_sockets_in(&ns.name, &all.with_local_port(p1)).unwrap();
    let mut expected = vec![
        (p1, 0, TcpState::Listen),
        (
            p1,
            client.local_addr().unwrap().port(),
            TcpState::Established,
        ),
    ];
    expected.sort();
    assert_eq!(ports(&l1_with_server), expected);

    // Families: everything here is IPv4.
    let v6 = Query {
        family: Family::V6,
        ..all
    };
    assert!(tcp_sockets_in(&ns.name, &v6).unwrap().is_empty());
    let v4 = Query {
        family: Family::V4,
        ..all
    };
    assert_eq!(tcp_sockets_in(&ns.name, &v4).unwrap().len(), 6);

    // A reused handle in the namespace lists the same, and plain TCP
    // yields no MPTCP connection.
    let again = edgemig_netns::in_netns(&ns.name, || {
        let mut diag = SockDiag::open().expect("open");
        let first = diag.tcp_sockets(&Query::established()).expect("first");
        let second = diag.tcp_sockets(&Query::established()).expect("second");
        (first.len(), second.len(), group_mptcp(&second).len())
    })
    .unwrap();
    assert_eq!(again, (4, 4, 0));
}

#[test]
fn missing_namespace_is_a_typed_error() {
    let name = format!("{}-absent", unique_name());
    let err = tcp_sockets_in(&name, &Query::default()).expect_err("no such namespace");
    assert!(matches!(err, SockDiagError::Netns(_)), "{err:?}");
    assert!(matches!(
        tcp_sockets_in("a/b", &Query::default()),
        Err(SockDiagError::Netns(
            edgemig_netns::NetnsError::InvalidName(_)
        ))
    ));
}
