//! One received packet in, at most one reply out: decode, look the MAC up
//! in the lease table, decide, encode. No I/O; the work per packet is
//! bounded by its size (one pass over the options, one table lookup, one
//! reply of a few hundred bytes).

use std::net::{Ipv4Addr, SocketAddrV4};

use crate::decide::{Decision, Destination, Ignored, Noted, Reply, decide};
use crate::reply::{EncodeError, encode};
use crate::request::{ParseError, Request, parse};
use crate::stats::Event;
use crate::table::LeaseTable;

/// Port clients listen on.
pub const CLIENT_PORT: u16 = 68;

/// A reply ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The encoded BOOTREPLY.
    pub bytes: Vec<u8>,
    /// Where it goes.
    pub to: SocketAddrV4,
}

/// What became of one packet.
#[derive(Debug)]
pub enum Handled {
    /// Not a DHCP client message.
    Malformed(ParseError),
    /// A client message and the server's decision.
    Decided {
        /// The message.
        request: Request,
        /// The decision.
        decision: Decision,
        /// The reply to send, when the decision is to answer.
        outgoing: Option<Result<Outgoing, EncodeError>>,
    },
}

impl Handled {
    /// The counter this outcome adds to (a reply that cannot be sent
    /// counts here too, and under [`Event::SendFailed`]).
    pub fn event(&self) -> Event {
        match self {
            Handled::Malformed(_) => Event::Malformed,
            Handled::Decided { decision, .. } => match decision {
                Decision::Reply { reply, .. } => match reply {
                    Reply::Offer(_) => Event::Offer,
                    Reply::Ack(_) => Event::Ack,
                    Reply::InformAck(_) => Event::InformAck,
                    Reply::Nak(_) => Event::Nak,
                },
                Decision::Ignore(Ignored::UnknownMac) => Event::UnknownMac,
                Decision::Ignore(_) => Event::Ignored,
                Decision::Note(Noted::Released(_)) => Event::Release,
                Decision::Note(Noted::Declined(_)) => Event::Decline,
            },
        }
    }
}

fn socket_addr(to: Destination) -> SocketAddrV4 {
    match to {
        Destination::Broadcast => SocketAddrV4::new(Ipv4Addr::BROADCAST, CLIENT_PORT),
        Destination::Unicast(ip) => SocketAddrV4::new(ip, CLIENT_PORT),
    }
}

/// Handles one UDP payload received on port 67 by server `server_id`.
pub fn handle(packet: &[u8], server_id: Ipv4Addr, leases: &LeaseTable) -> Handled {
    let request = match parse(packet) {
        Ok(request) => request,
        Err(e) => return Handled::Malformed(e),
    };
    let lease = leases.get(&request.mac);
    let decision = decide(&request, lease.as_ref(), server_id);
    let outgoing = match &decision {
        Decision::Reply { reply, to } => {
            Some(encode(&request, reply, server_id).map(|bytes| Outgoing {
                bytes,
                to: socket_addr(*to),
            }))
        }
        Decision::Ignore(_) | Decision::Note(_) => None,
    };
    Handled::Decided {
        request,
        decision,
        outgoing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::{Lease, LeaseTime};
    use crate::test_packets::{
        ADDRESS, MAC, SERVER, XID, bytes, decode, lease, mac, message, with,
    };
    use dhcproto::v4::{DhcpOption, Message, MessageType, Opcode, OptionCode};

    fn table() -> LeaseTable {
        let t = LeaseTable::new();
        t.insert(mac(), lease());
        t
    }

    fn answer(msg: &Message, leases: &LeaseTable) -> (Message, SocketAddrV4) {
        match handle(&bytes(msg), SERVER, leases) {
            Handled::Decided {
                outgoing: Some(Ok(out)),
                ..
            } => {
                assert!(out.bytes.len() >= crate::reply::MIN_REPLY_LEN);
                (decode(&out.bytes), out.to)
            }
            other => panic!("no reply: {other:?}"),
        }
    }

    fn opt(msg: &Message, code: OptionCode) -> Option<&DhcpOption> {
        msg.opts().get(code)
    }

    #[test]
    fn offer_carries_the_lease() {
        let leases = table();
        let discover = with(
            message(MessageType::Discover),
            DhcpOption::ClientIdentifier(vec![1, 0x52, 0x54, 0, 0x12, 0x34, 0x56]),
        );
        let (offer, to) = answer(&discover, &leases);
        assert_eq!(to, SocketAddrV4::new(Ipv4Addr::BROADCAST, 68));
        assert_eq!(offer.opcode(), Opcode::BootReply);
        assert_eq!(offer.xid(), XID);
        assert_eq!(offer.chaddr(), &MAC);
        assert_eq!(offer.yiaddr(), ADDRESS);
        assert_eq!(offer.ciaddr(), Ipv4Addr::UNSPECIFIED);
        assert_eq!(offer.opts().msg_type(), Some(MessageType::Offer));
        assert_eq!(
            opt(&offer, OptionCode::ServerIdentifier),
            Some(&DhcpOption::ServerIdentifier(SERVER))
        );
        assert_eq!(
            opt(&offer, OptionCode::SubnetMask),
            Some(&DhcpOption::SubnetMask([255, 255, 255, 0].into()))
        );
        assert_eq!(
            opt(&offer, OptionCode::Router),
            Some(&DhcpOption::Router(vec![SERVER]))
        );
        assert_eq!(
            opt(&offer, OptionCode::AddressLeaseTime),
            Some(&DhcpOption::AddressLeaseTime(600))
        );
        assert_eq!(
            opt(&offer, OptionCode::Renewal),
            Some(&DhcpOption::Renewal(300))
        );
        assert_eq!(
            opt(&offer, OptionCode::Rebinding),
            Some(&DhcpOption::Rebinding(525))
        );
        assert_eq!(
            opt(&offer, OptionCode::ClientIdentifier),
            Some(&DhcpOption::ClientIdentifier(vec![
                1, 0x52, 0x54, 0, 0x12, 0x34, 0x56
            ]))
        );
        assert_eq!(opt(&offer, OptionCode::DomainNameServer), None);
    }

    #[test]
    fn renewal_ack_goes_to_the_client_and_follows_table_changes() {
        let leases = table();
        let mut renew = message(MessageType::Request);
        renew.set_ciaddr(ADDRESS);
        let (ack, to) = answer(&renew, &leases);
        assert_eq!(to, SocketAddrV4::new(ADDRESS, 68));
        assert_eq!(ack.opts().msg_type(), Some(MessageType::Ack));
        assert_eq!((ack.ciaddr(), ack.yiaddr()), (ADDRESS, ADDRESS));

        // The agent gives the VM a longer lease and a DNS server.
        let dns = Ipv4Addr::new(10, 10, 0, 53);
        leases.insert(
            mac(),
            lease()
                .with_lease_time(LeaseTime::from_secs(3600).unwrap())
                .with_dns(vec![dns])
                .unwrap(),
        );
        let (ack, _) = answer(&renew, &leases);
        assert_eq!(
            opt(&ack, OptionCode::AddressLeaseTime),
            Some(&DhcpOption::AddressLeaseTime(3600))
        );
        assert_eq!(
            opt(&ack, OptionCode::DomainNameServer),
            Some(&DhcpOption::DomainNameServer(vec![dns]))
        );

        // Then moves it to another address: the renewal is refused.
        let moved = Ipv4Addr::new(10, 10, 0, 24);
        leases.insert(mac(), Lease::new(moved, 24, SERVER).unwrap());
        let (nak, to) = answer(&renew, &leases);
        assert_eq!(to, SocketAddrV4::new(Ipv4Addr::BROADCAST, 68));
        assert_eq!(nak.opts().msg_type(), Some(MessageType::Nak));
        assert_eq!(nak.yiaddr(), Ipv4Addr::UNSPECIFIED);
        assert_eq!(opt(&nak, OptionCode::AddressLeaseTime), None);
        assert!(opt(&nak, OptionCode::Message).is_some());

        // And removes it: silence.
        leases.remove(&mac());
        assert!(matches!(
            handle(&bytes(&renew), SERVER, &leases),
            Handled::Decided {
                outgoing: None,
                decision: Decision::Ignore(crate::decide::Ignored::UnknownMac),
                ..
            }
        ));
    }

    #[test]
    fn inform_ack_has_no_lease() {
        let mut inform = message(MessageType::Inform);
        let here = Ipv4Addr::new(10, 10, 0, 200);
        inform.set_ciaddr(here);
        let (ack, to) = answer(&inform, &table());
        assert_eq!(to, SocketAddrV4::new(here, 68));
        assert_eq!(ack.opts().msg_type(), Some(MessageType::Ack));
        assert_eq!((ack.ciaddr(), ack.yiaddr()), (here, Ipv4Addr::UNSPECIFIED));
        assert_eq!(opt(&ack, OptionCode::AddressLeaseTime), None);
        assert!(opt(&ack, OptionCode::Router).is_some());
    }

    /// xorshift64*: reproducible pseudo-random bytes without a dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn byte(&mut self) -> u8 {
            (self.next() >> 56) as u8
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.byte()).collect()
        }
    }

    /// Handles `packet`; a reply, if any, must be a well-formed answer to
    /// the client in the packet.
    fn survives(packet: &[u8], leases: &LeaseTable) {
        if let Handled::Decided {
            request,
            outgoing: Some(Ok(out)),
            ..
        } = handle(packet, SERVER, leases)
        {
            let reply = decode(&out.bytes);
            assert_eq!(reply.xid(), request.xid);
            assert_eq!(reply.chaddr(), &request.mac.octets());
            assert_eq!(
                reply.opts().get(OptionCode::ServerIdentifier),
                Some(&DhcpOption::ServerIdentifier(SERVER))
            );
        }
    }

    fn full_request() -> Vec<u8> {
        let msg = with(
            with(
                with(
                    message(MessageType::Request),
                    DhcpOption::RequestedIpAddress(ADDRESS),
                ),
                DhcpOption::ServerIdentifier(SERVER),
            ),
            DhcpOption::ClientIdentifier(vec![1; 20]),
        );
        let msg = with(msg, DhcpOption::Hostname("guest".into()));
        let msg = with(
            msg,
            DhcpOption::ParameterRequestList(vec![OptionCode::SubnetMask, OptionCode::Router]),
        );
        bytes(&msg)
    }

    #[test]
    fn garbage_never_panics() {
        let leases = table();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        // Pure noise, any length up to the largest packet read.
        for _ in 0..5_000 {
            let n = rng.below(MAX_PACKET_FOR_TESTS);
            survives(&rng.bytes(n), &leases);
        }
        // A valid header from a known MAC, then random option bytes: the
        // options parser sees everything.
        let header = &full_request()[..240];
        for _ in 0..20_000 {
            let mut packet = header.to_vec();
            packet.push(53);
            packet.push(1);
            packet.push(1 + rng.below(8) as u8);
            let n = rng.below(600);
            packet.extend(rng.bytes(n));
            survives(&packet, &leases);
        }
    }

    const MAX_PACKET_FOR_TESTS: usize = 1500;

    #[test]
    fn truncated_and_mutated_packets_never_panic() {
        let leases = table();
        let good = full_request();
        for len in 0..=good.len() {
            survives(&good[..len], &leases);
        }
        let mut rng = Rng(42);
        for at in 0..good.len() {
            for value in [
                0, 1, 2, 3, 6, 16, 50, 53, 54, 61, 81, 0x7f, 0x80, 0xfe, 0xff,
            ] {
                let mut p = good.clone();
                p[at] = value;
                survives(&p, &leases);
            }
            let mut p = good.clone();
            p[at] = rng.byte();
            survives(&p, &leases);
        }
    }

    #[test]
    fn every_option_code_and_short_length_is_survived() {
        let leases = table();
        let mut rng = Rng(7);
        let header = &full_request()[..240];
        for code in 0..=255u8 {
            for len in 0..=8u8 {
                let mut p = header.to_vec();
                p.extend([53, 1, 3]);
                p.extend([code, len]);
                p.extend(rng.bytes(usize::from(len)));
                // And the same option concatenated (RFC 3396).
                p.extend([code, len]);
                p.extend(rng.bytes(usize::from(len)));
                p.push(255);
                survives(&p, &leases);
            }
        }
    }
}
