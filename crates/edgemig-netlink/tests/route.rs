//! [`NlSocket`] against the real kernel over `NETLINK_ROUTE`, read-only
//! (nothing is created or changed) in the namespace the tests run in: ACKed requests, dumps, typed kernel
//! errors with extended-ACK text, and replies to an abandoned request being
//! skipped.

use edgemig_netlink::{NetlinkError, NlSocket, protocols::NETLINK_ROUTE};
use netlink_packet_core::{NLM_F_ACK, NLM_F_DUMP};
use netlink_packet_route::{
    RouteNetlinkMessage,
    link::{LinkAttribute, LinkMessage},
};

fn get_link(name: &str) -> RouteNetlinkMessage {
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
    RouteNetlinkMessage::GetLink(msg)
}

/// Names of the `RTM_NEWLINK` messages among `replies`.
fn link_names(replies: &[RouteNetlinkMessage]) -> Vec<String> {
    replies
        .iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => l.attributes.iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some(n.clone()),
                _ => None,
            }),
            _ => None,
        })
        .collect()
}

#[test]
fn acked_get_returns_the_answer() {
    let mut sock = NlSocket::open(NETLINK_ROUTE).expect("open");
    let replies = sock
        .request("get link lo", get_link("lo"), NLM_F_ACK)
        .expect("get lo");
    assert_eq!(link_names(&replies), ["lo"]);
}

#[test]
fn dump_lists_every_link() {
    let mut sock = NlSocket::open(NETLINK_ROUTE).expect("open");
    let all = RouteNetlinkMessage::GetLink(LinkMessage::default());
    let names = link_names(
        &sock
            .request("get links", all.clone(), NLM_F_DUMP)
            .expect("dump"),
    );
    assert!(names.iter().any(|n| n == "lo"), "{names:?}");
    // The callback form sees the same links.
    let mut seen = Vec::new();
    sock.dump("get links", all, |m| -> Result<(), NetlinkError> {
        seen.extend(link_names(&[m]));
        Ok(())
    })
    .expect("dump with callback");
    assert!(seen.iter().any(|n| n == "lo"), "{seen:?}");
}

#[test]
fn kernel_rejection_is_typed_and_socket_stays_usable() {
    let mut sock = NlSocket::open(NETLINK_ROUTE).expect("open");
    let name = format!("emnl{}x", std::process::id());
    let err = sock
        .request("get link", get_link(&name), NLM_F_ACK)
        .expect_err("no such link");
    assert!(
        matches!(err, NetlinkError::Kernel { op: "get link", errno, .. } if errno == libc::ENODEV),
        "{err:?}"
    );
    assert_eq!(err.errno(), Some(libc::ENODEV));
    assert_eq!(
        link_names(
            &sock
                .request("get link lo", get_link("lo"), NLM_F_ACK)
                .expect("get lo")
        ),
        ["lo"]
    );
}

#[test]
fn policy_violation_carries_the_extended_ack_message() {
    let mut sock = NlSocket::open(NETLINK_ROUTE).expect("open");
    // IFLA_IFNAME is limited to IFNAMSIZ - 1 bytes by the kernel's policy.
    let err = sock
        .request("get link", get_link(&"x".repeat(40)), NLM_F_ACK)
        .expect_err("name longer than IFNAMSIZ");
    // ERANGE since Linux 5.x, EINVAL before.
    assert!(
        matches!(err.errno(), Some(libc::ERANGE | libc::EINVAL)),
        "{err}"
    );
    let msg = err.kernel_message().expect("extended-ACK message");
    assert_eq!(msg, "Attribute failed policy validation", "{err}");
    assert!(err.to_string().contains(msg), "{err}");
}

#[derive(Debug)]
enum Stop {
    Early,
    Netlink(NetlinkError),
}

impl From<NetlinkError> for Stop {
    fn from(e: NetlinkError) -> Self {
        Self::Netlink(e)
    }
}

#[test]
fn callback_error_stops_early_and_stale_replies_are_skipped() {
    let mut sock = NlSocket::open(NETLINK_ROUTE).expect("open");
    // The kernel answers an ACKed RTM_GETLINK with the link, then the ACK in
    // a datagram of its own: stopping at the link leaves that ACK queued.
    let mut calls = 0;
    let r = sock.request_each("get link lo", get_link("lo"), NLM_F_ACK, |_| {
        calls += 1;
        Err(Stop::Early)
    });
    match r {
        Err(Stop::Early) => {}
        Err(Stop::Netlink(e)) => panic!("netlink error instead of the callback's: {e}"),
        Ok(()) => panic!("the callback's error was dropped"),
    }
    assert_eq!(calls, 1);
    // Taking the stale ACK for this request's would return no link.
    let replies = sock
        .request("get link lo", get_link("lo"), NLM_F_ACK)
        .expect("get lo after an abandoned request");
    assert_eq!(link_names(&replies), ["lo"]);
}
