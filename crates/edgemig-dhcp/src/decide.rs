//! What the server does with one client message, given the client's lease
//! (RFC 2131 §4.3). Pure: no I/O, no clock, so every case is a unit test.

use std::net::Ipv4Addr;

use crate::lease::Lease;
use crate::request::{Request, RequestKind};

/// Where a reply goes (RFC 2131 §4.1, without relays).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// 255.255.255.255:68 on the bridge: the client has no address yet, or
    /// must hear a DHCPNAK whatever address it uses.
    Broadcast,
    /// The client's own address, port 68 (renewing, rebinding, informing).
    Unicast(Ipv4Addr),
}

/// Why a DHCPNAK is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NakReason {
    /// The client asked for (or holds) an address that is not its lease's.
    WrongAddress(Ipv4Addr),
}

/// The reply to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// DHCPOFFER of the lease.
    Offer(Lease),
    /// DHCPACK binding the lease.
    Ack(Lease),
    /// DHCPACK to a DHCPINFORM: the lease's parameters, no address, no
    /// lease time.
    InformAck(Lease),
    /// DHCPNAK: the client must start over.
    Nak(NakReason),
}

/// Why a message gets no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// No lease for this MAC address.
    UnknownMac,
    /// Came through a relay agent (`giaddr` set); the site's bridge has
    /// none, so this is not for us.
    Relayed(Ipv4Addr),
    /// The client selected another server, or talks to one.
    OtherServer(Ipv4Addr),
    /// A DHCPREQUEST with neither a requested address nor `ciaddr`.
    NoAddress,
    /// A DHCPINFORM from an address outside the lease's network.
    InformOutside(Ipv4Addr),
}

/// Messages that are only logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Noted {
    /// The client released its address (nothing to free: leases are
    /// static).
    Released(Ipv4Addr),
    /// The client found its address in use on the network: an address
    /// conflict the operator must look at.
    Declined(Option<Ipv4Addr>),
}

/// The outcome of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Send `reply` to `to`.
    Reply {
        /// The reply.
        reply: Reply,
        /// Where it goes.
        to: Destination,
    },
    /// Send nothing.
    Ignore(Ignored),
    /// Send nothing, log it.
    Note(Noted),
}

/// Unicast to `ciaddr` when the client already uses its lease's address,
/// broadcast otherwise.
fn toward(req: &Request, lease: &Lease) -> Destination {
    if req.ciaddr == lease.address() {
        Destination::Unicast(req.ciaddr)
    } else {
        Destination::Broadcast
    }
}

fn ack_or_nak(req: &Request, lease: &Lease, address: Ipv4Addr) -> Decision {
    if address == lease.address() {
        Decision::Reply {
            reply: Reply::Ack(lease.clone()),
            to: toward(req, lease),
        }
    } else {
        Decision::Reply {
            reply: Reply::Nak(NakReason::WrongAddress(address)),
            to: Destination::Broadcast,
        }
    }
}

/// Decides the answer to `req` from the client's `lease` (`None`: the MAC
/// is unknown); `server_id` is this server's address (the bridge's
/// gateway).
pub fn decide(req: &Request, lease: Option<&Lease>, server_id: Ipv4Addr) -> Decision {
    if !req.giaddr.is_unspecified() {
        return Decision::Ignore(Ignored::Relayed(req.giaddr));
    }
    if let Some(other) = req.server_id.filter(|id| *id != server_id) {
        return Decision::Ignore(Ignored::OtherServer(other));
    }
    let Some(lease) = lease else {
        return Decision::Ignore(Ignored::UnknownMac);
    };
    let ciaddr = Some(req.ciaddr).filter(|a| !a.is_unspecified());
    match req.kind {
        RequestKind::Discover => Decision::Reply {
            reply: Reply::Offer(lease.clone()),
            to: toward(req, lease),
        },
        // SELECTING (server id set) and INIT-REBOOT carry the address in
        // option 50; RENEWING and REBINDING in ciaddr.
        RequestKind::Request => match req.requested_ip.or(ciaddr) {
            Some(address) => ack_or_nak(req, lease, address),
            None => Decision::Ignore(Ignored::NoAddress),
        },
        RequestKind::Inform => match ciaddr {
            Some(address) if lease.contains(address) => Decision::Reply {
                reply: Reply::InformAck(lease.clone()),
                to: Destination::Unicast(address),
            },
            Some(address) => Decision::Ignore(Ignored::InformOutside(address)),
            None => Decision::Reply {
                reply: Reply::InformAck(lease.clone()),
                to: Destination::Broadcast,
            },
        },
        RequestKind::Release => Decision::Note(Noted::Released(req.ciaddr)),
        RequestKind::Decline => Decision::Note(Noted::Declined(req.requested_ip)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{Request, RequestKind};
    use crate::test_packets::{ADDRESS, SERVER, XID, lease, mac};

    const OTHER: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 99);
    const NONE: Ipv4Addr = Ipv4Addr::UNSPECIFIED;

    fn req(kind: RequestKind) -> Request {
        Request {
            kind,
            xid: XID,
            flags: 0,
            ciaddr: NONE,
            giaddr: NONE,
            mac: mac(),
            requested_ip: None,
            server_id: None,
            client_id: None,
        }
    }

    fn reply(reply: Reply, to: Destination) -> Decision {
        Decision::Reply { reply, to }
    }

    fn nak(address: Ipv4Addr) -> Decision {
        reply(
            Reply::Nak(NakReason::WrongAddress(address)),
            Destination::Broadcast,
        )
    }

    fn run(r: Request) -> Decision {
        decide(&r, Some(&lease()), SERVER)
    }

    #[test]
    fn discover_is_offered_the_lease_whatever_it_asks_for() {
        let d = req(RequestKind::Discover);
        assert_eq!(
            run(d.clone()),
            reply(Reply::Offer(lease()), Destination::Broadcast)
        );
        let asking = Request {
            requested_ip: Some(OTHER),
            ..d
        };
        assert_eq!(
            run(asking),
            reply(Reply::Offer(lease()), Destination::Broadcast)
        );
    }

    #[test]
    fn selecting() {
        let ours = Request {
            server_id: Some(SERVER),
            requested_ip: Some(ADDRESS),
            ..req(RequestKind::Request)
        };
        assert_eq!(
            run(ours.clone()),
            reply(Reply::Ack(lease()), Destination::Broadcast)
        );
        let wrong = Request {
            requested_ip: Some(OTHER),
            ..ours.clone()
        };
        assert_eq!(run(wrong), nak(OTHER));
        let elsewhere = Request {
            server_id: Some(OTHER),
            ..ours
        };
        assert_eq!(
            run(elsewhere),
            Decision::Ignore(Ignored::OtherServer(OTHER))
        );
    }

    #[test]
    fn init_reboot() {
        let r = Request {
            requested_ip: Some(ADDRESS),
            ..req(RequestKind::Request)
        };
        assert_eq!(
            run(r.clone()),
            reply(Reply::Ack(lease()), Destination::Broadcast)
        );
        let moved = Request {
            requested_ip: Some(Ipv4Addr::new(10, 20, 0, 5)),
            ..r
        };
        assert_eq!(run(moved), nak(Ipv4Addr::new(10, 20, 0, 5)));
    }

    #[test]
    fn renewing_and_rebinding_are_answered_at_the_clients_address() {
        // Renewing is unicast and rebinding broadcast by the client: the
        // server sees the same message either way.
        let r = Request {
            ciaddr: ADDRESS,
            ..req(RequestKind::Request)
        };
        assert_eq!(
            run(r.clone()),
            reply(Reply::Ack(lease()), Destination::Unicast(ADDRESS))
        );
        // The agent changed the lease: the client must start over.
        let stale = Request { ciaddr: OTHER, ..r };
        assert_eq!(run(stale), nak(OTHER));
        assert_eq!(
            run(req(RequestKind::Request)),
            Decision::Ignore(Ignored::NoAddress)
        );
    }

    #[test]
    fn unknown_macs_and_relays_get_nothing() {
        for kind in [
            RequestKind::Discover,
            RequestKind::Request,
            RequestKind::Inform,
            RequestKind::Release,
            RequestKind::Decline,
        ] {
            assert_eq!(
                decide(&req(kind), None, SERVER),
                Decision::Ignore(Ignored::UnknownMac)
            );
            let relayed = Request {
                giaddr: OTHER,
                ..req(kind)
            };
            assert_eq!(run(relayed), Decision::Ignore(Ignored::Relayed(OTHER)));
        }
    }

    #[test]
    fn inform_gets_parameters_at_its_address() {
        let here = Ipv4Addr::new(10, 10, 0, 200);
        let r = Request {
            ciaddr: here,
            ..req(RequestKind::Inform)
        };
        assert_eq!(
            run(r.clone()),
            reply(Reply::InformAck(lease()), Destination::Unicast(here))
        );
        let far = Ipv4Addr::new(192, 0, 2, 1);
        assert_eq!(
            run(Request { ciaddr: far, ..r }),
            Decision::Ignore(Ignored::InformOutside(far))
        );
        assert_eq!(
            run(req(RequestKind::Inform)),
            reply(Reply::InformAck(lease()), Destination::Broadcast)
        );
    }

    #[test]
    fn release_and_decline_are_noted() {
        let release = Request {
            ciaddr: ADDRESS,
            server_id: Some(SERVER),
            ..req(RequestKind::Release)
        };
        assert_eq!(run(release), Decision::Note(Noted::Released(ADDRESS)));
        let decline = Request {
            requested_ip: Some(ADDRESS),
            server_id: Some(SERVER),
            ..req(RequestKind::Decline)
        };
        assert_eq!(run(decline), Decision::Note(Noted::Declined(Some(ADDRESS))));
    }
}
