//! Announcing an address again, against the real kernel: a "guest"
//! namespace serves MPTCP to a "client" namespace over two veth links. The
//! client drops every ADD_ADDR (nftables) until the guest's kernel gave up
//! re-sending the announcement of its second address; the connection then
//! stays on the first address, as a client cut off during a handoff does.
//! `nic_reannounce` must make the client join the second address, `nic_up`
//! must keep the extra endpoint, `nic_retire` must remove it.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Ns, is_root, link};
use edgemig_guest::net::{self, NicRef};
use edgemig_guest_proto::NetReport;
use edgemig_mptcp::{Limits, MptcpPm};
use socket2::{Domain, Protocol, Socket, Type};

/// Upper bound for the kernel's own announcement and its 3 re-sends (2 s
/// apart here) and for the client to join; only keeps a broken kernel from
/// hanging the test.
const DEADLINE: Duration = Duration::from_secs(30);

/// `nft` inside `ns` with `script` on stdin; its stdout.
fn nft(ns: &Ns, args: &[&str], script: &str) -> String {
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns.0, "nft"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run nft (package nftables)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("write the nft script");
    let out = child.wait_with_output().expect("nft");
    assert!(
        out.status.success(),
        "nft {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// ADD_ADDR options (MPTCP subtype 3) the client's drop rule counted.
fn dropped_announcements(client: &Ns) -> u64 {
    let listing = nft(client, &["list", "chain", "inet", "emtest", "input"], "");
    listing
        .split_whitespace()
        .skip_while(|w| *w != "packets")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no counter in {listing}"))
}

fn local_addresses(guest: &Ns) -> Vec<String> {
    let rep: NetReport = guest.run(|| net::net_status().unwrap());
    rep.connections
        .iter()
        .find(|c| c.mptcp)
        .map(|c| c.local_addresses.clone())
        .unwrap_or_default()
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn echo(client: &mut TcpStream, server: &mut TcpStream) {
    let data = vec![9u8; 8 << 10];
    let mut buf = vec![0u8; data.len()];
    client.write_all(&data).unwrap();
    server.read_exact(&mut buf).unwrap();
    server.write_all(&buf).unwrap();
    client.read_exact(&mut buf).unwrap();
    assert_eq!(buf, data);
}

#[test]
fn an_announcement_lost_for_good_is_made_again_and_the_client_joins() {
    if !is_root() {
        return;
    }
    let guest = Ns::new();
    let client = Ns::new();
    link(&guest, "gv0", &client, "cv0", "10.1.0");
    link(&guest, "gv1", &client, "cv1", "10.2.0");
    let old: IpAddr = "10.1.0.2".parse().unwrap();

    let listener = guest.run(|| {
        MptcpPm::open()
            .unwrap()
            .set_limits(net::MPTCP_LIMITS)
            .unwrap();
        let refused = edgemig_guest::sysctl::set_mptcp();
        assert!(refused.is_empty(), "{refused:?}");
        let l = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::MPTCP)).unwrap();
        l.bind(&SocketAddr::new(IpAddr::from([0, 0, 0, 0]), 0).into())
            .unwrap();
        l.listen(8).unwrap();
        l
    });
    let port = listener.local_addr().unwrap().as_socket().unwrap().port();
    nft(
        &client,
        &["-f", "-"],
        "table inet emtest {\n chain input {\n  type filter hook input priority 0;\n  \
         tcp option mptcp subtype 3 counter drop\n }\n}\n",
    );
    let mut c = client.run(|| {
        MptcpPm::open()
            .unwrap()
            .set_limits(Limits {
                subflows: 4,
                add_addr_accepted: 4,
            })
            .unwrap();
        let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::MPTCP)).unwrap();
        s.connect(&SocketAddr::new(old, port).into()).unwrap();
        TcpStream::from(s)
    });
    let mut s = TcpStream::from(listener.accept().unwrap().0);
    echo(&mut c, &mut s);

    // The second address is announced (NicUp) and every ADD_ADDR dropped.
    let gv1 = NicRef::name("gv1");
    guest.run(|| net::nic_up(gv1, "10.2.0.2/24", "10.2.0.1").unwrap());
    wait_for("the announcement and its 3 re-sends", || {
        dropped_announcements(&client) >= 4
    });
    // Past the kernel's last re-send (2 s after the 4th), nothing comes.
    std::thread::sleep(Duration::from_secs(3));
    let given_up = dropped_announcements(&client);
    assert_eq!(given_up, 4, "the kernel sends an ADD_ADDR 4 times");
    assert_eq!(local_addresses(&guest), vec!["10.1.0.2".to_string()]);

    nft(&client, &["delete", "table", "inet", "emtest"], "");
    let again = guest.run(|| net::nic_reannounce(gv1, "10.2.0.2/24").unwrap());
    assert_eq!(again.nic, "gv1");
    assert_eq!(again.endpoints.len(), 1, "{again:?}");
    wait_for("the client to join the announced address", || {
        local_addresses(&guest).len() == 2
    });
    assert_eq!(
        local_addresses(&guest),
        vec!["10.1.0.2".to_string(), "10.2.0.2".to_string()]
    );
    echo(&mut c, &mut s);

    // NicUp again is idempotent and keeps the announced port.
    let endpoints = || guest.run(|| MptcpPm::open().unwrap().endpoints().unwrap());
    let with_port = |eps: &[edgemig_mptcp::Endpoint]| {
        eps.iter()
            .filter(|e| e.addr == IpAddr::from([10, 2, 0, 2]) && e.port.is_some())
            .count()
    };
    assert_eq!(with_port(&endpoints()), 1, "{:?}", endpoints());
    guest.run(|| net::nic_up(gv1, "10.2.0.2/24", "10.2.0.1").unwrap());
    assert_eq!(with_port(&endpoints()), 1, "{:?}", endpoints());

    // An address the NIC does not hold is refused, nothing added.
    let refused = guest.run(|| net::nic_reannounce(gv1, "10.9.0.2").unwrap_err());
    assert!(
        refused.to_string().contains("not an address of gv1"),
        "{refused}"
    );
    assert_eq!(endpoints().len(), 2, "{:?}", endpoints());

    // Retiring the NIC removes both of its endpoints.
    guest.run(|| net::nic_retire(gv1).unwrap());
    assert!(
        endpoints()
            .iter()
            .all(|e| e.addr != IpAddr::from([10, 2, 0, 2])),
        "{:?}",
        endpoints()
    );
    drop((c, s));
}
