//! Hand-made client messages against the server on a real bridge (root
//! needed), for the cases busybox's client does not produce: INIT-REBOOT,
//! a foreign server identifier, INFORM, RELEASE, DECLINE, garbage; and a
//! clean stop. The client has two sockets on port 68: one bound to its
//! own address (hears only unicast replies) and one bound to the wildcard
//! address (hears the broadcast ones).

mod common;

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::Duration;

use common::{GATEWAY, Site, lease, mac};
use dhcproto::v4::{Decodable, Decoder, DhcpOption, Encodable, Message, MessageType, OptionCode};
use edgemig_testkit::wait_until;
use socket2::{Domain, Protocol, Socket, Type};

/// The client's own address (configured by hand on its interface).
const HERE: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 200);
/// Hang guard of one receive.
const RECV_LIMIT: Duration = Duration::from_secs(20);
const UNSPEC: Ipv4Addr = Ipv4Addr::UNSPECIFIED;

struct Client {
    unicast: UdpSocket,
    broadcast: UdpSocket,
    xid: u32,
}

fn socket(device: &str, addr: Ipv4Addr) -> UdpSocket {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    s.set_reuse_address(true).unwrap();
    s.set_broadcast(true).unwrap();
    s.bind_device(Some(device.as_bytes())).unwrap();
    s.bind(&SocketAddrV4::new(addr, 68).into()).unwrap();
    let s: UdpSocket = s.into();
    s.set_read_timeout(Some(RECV_LIMIT)).unwrap();
    s
}

impl Client {
    fn new(site: &Site) -> Self {
        site.client.exec(&[
            "ip",
            "addr",
            "add",
            &format!("{HERE}/24"),
            "dev",
            &site.client_if,
        ]);
        let device = site.client_if.clone();
        // Sockets belong to the namespace of the thread that opens them.
        let (unicast, broadcast) = edgemig_netns::in_netns(site.client.name(), move || {
            (socket(&device, HERE), socket(&device, UNSPEC))
        })
        .unwrap();
        Self {
            unicast,
            broadcast,
            xid: 1,
        }
    }

    /// A message of type `kind` from the client's MAC, fresh xid.
    fn message(&mut self, kind: MessageType, ciaddr: Ipv4Addr, opts: Vec<DhcpOption>) -> Message {
        self.xid += 1;
        let mac = mac().octets();
        let mut msg = Message::new_with_id(self.xid, ciaddr, UNSPEC, UNSPEC, UNSPEC, &mac);
        msg.opts_mut().insert(DhcpOption::MessageType(kind));
        for opt in opts {
            msg.opts_mut().insert(opt);
        }
        msg
    }

    fn send_raw(&self, bytes: &[u8]) {
        self.broadcast
            .send_to(bytes, SocketAddrV4::new(Ipv4Addr::BROADCAST, 67))
            .unwrap();
    }

    fn send(&self, msg: &Message) {
        self.send_raw(&msg.to_vec().unwrap());
    }

    fn recv(socket: &UdpSocket, which: &str) -> Message {
        let mut buf = [0u8; 1500];
        let (n, from) = socket
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("no {which} reply: {e}"));
        assert_eq!(from, SocketAddrV4::new(GATEWAY, 67).into());
        Message::decode(&mut Decoder::new(&buf[..n])).unwrap()
    }

    fn recv_unicast(&self) -> Message {
        Self::recv(&self.unicast, "unicast")
    }

    fn recv_broadcast(&self) -> Message {
        Self::recv(&self.broadcast, "broadcast")
    }

    /// Nothing is waiting on either socket.
    fn assert_quiet(&self) {
        let mut buf = [0u8; 1500];
        for s in [&self.unicast, &self.broadcast] {
            s.set_nonblocking(true).unwrap();
            let got = s.recv_from(&mut buf);
            s.set_nonblocking(false).unwrap();
            assert!(got.is_err(), "unexpected reply: {got:?}");
        }
    }

    /// An INFORM round trip: everything the server sent before has been
    /// handled by then.
    fn inform_round_trip(&mut self) {
        let msg = self.message(MessageType::Inform, HERE, vec![]);
        self.send(&msg);
        let ack = self.recv_unicast();
        assert_eq!(ack.xid(), msg.xid());
        assert_eq!(ack.opts().msg_type(), Some(MessageType::Ack));
    }

    /// Two INFORM round trips, then nothing else may be waiting.
    fn assert_no_answer(&mut self) {
        self.inform_round_trip();
        self.inform_round_trip();
        self.assert_quiet();
    }
}

fn started() -> (Site, Client) {
    let site = Site::with_server();
    let client = Client::new(&site);
    (site, client)
}

#[test]
fn init_reboot_is_acked_or_refused() {
    let (site, mut client) = started();
    site.leases.insert(mac(), lease(200));
    // INIT-REBOOT for its own address: ACK, broadcast (no ciaddr yet).
    let msg = client.message(
        MessageType::Request,
        UNSPEC,
        vec![DhcpOption::RequestedIpAddress(HERE)],
    );
    client.send(&msg);
    let ack = client.recv_broadcast();
    assert_eq!(ack.xid(), msg.xid());
    assert_eq!(ack.opts().msg_type(), Some(MessageType::Ack));
    assert_eq!(ack.yiaddr(), HERE);
    assert_eq!(ack.chaddr(), &mac().octets());

    // For an address it had on another network: NAK, broadcast.
    let msg = client.message(
        MessageType::Request,
        UNSPEC,
        vec![DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 20, 0, 5))],
    );
    client.send(&msg);
    let nak = client.recv_broadcast();
    assert_eq!(nak.xid(), msg.xid());
    assert_eq!(nak.opts().msg_type(), Some(MessageType::Nak));
    assert_eq!(nak.yiaddr(), UNSPEC);
    assert_eq!(
        nak.opts().get(OptionCode::ServerIdentifier),
        Some(&DhcpOption::ServerIdentifier(GATEWAY))
    );
    client.assert_quiet();
    assert_eq!((site.stats().acks, site.stats().naks), (1, 1));
}

#[test]
fn renewal_is_answered_by_unicast() {
    let (site, mut client) = started();
    site.leases.insert(mac(), lease(200));
    let msg = client.message(MessageType::Request, HERE, vec![]);
    client.send(&msg);
    let ack = client.recv_unicast();
    assert_eq!(ack.xid(), msg.xid());
    assert_eq!(ack.opts().msg_type(), Some(MessageType::Ack));
    assert_eq!((ack.ciaddr(), ack.yiaddr()), (HERE, HERE));
    assert_eq!(
        ack.opts().get(OptionCode::Renewal),
        Some(&DhcpOption::Renewal(300))
    );
    client.assert_quiet();
}

#[test]
fn foreign_server_release_and_decline_get_no_answer() {
    let (site, mut client) = started();
    site.leases.insert(mac(), lease(200));
    let other = Ipv4Addr::new(10, 99, 0, 254);
    let selecting_other = client.message(
        MessageType::Request,
        UNSPEC,
        vec![
            DhcpOption::ServerIdentifier(other),
            DhcpOption::RequestedIpAddress(HERE),
        ],
    );
    client.send(&selecting_other);
    client.assert_no_answer();
    assert_eq!(site.stats().ignored, 1);

    let release = client.message(
        MessageType::Release,
        HERE,
        vec![DhcpOption::ServerIdentifier(GATEWAY)],
    );
    client.send(&release);
    let decline = client.message(
        MessageType::Decline,
        UNSPEC,
        vec![
            DhcpOption::ServerIdentifier(GATEWAY),
            DhcpOption::RequestedIpAddress(HERE),
        ],
    );
    client.send(&decline);
    client.assert_no_answer();
    let stats = site.stats();
    assert_eq!((stats.releases, stats.declines), (1, 1), "{stats:?}");
    assert_eq!((stats.acks, stats.naks, stats.offers), (0, 0, 0));
    assert_eq!(stats.inform_acks, 4);
}

#[test]
fn garbage_is_counted_and_the_server_goes_on() {
    let (site, mut client) = started();
    site.leases.insert(mac(), lease(200));
    let good = client
        .message(MessageType::Discover, UNSPEC, vec![])
        .to_vec()
        .unwrap();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut sent = 0u64;
    for batch in 0..10 {
        for i in 0..20usize {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let packet: Vec<u8> = match i % 3 {
                // Truncated messages.
                0 => good[..(seed as usize % good.len())].to_vec(),
                // A valid header, then noise.
                1 => {
                    let mut p = good[..240].to_vec();
                    p.extend((0..(seed % 300)).map(|k| (seed >> (k % 57)) as u8));
                    p
                }
                // Noise.
                _ => (0..(seed % 600))
                    .map(|k| (seed >> (k % 61)) as u8)
                    .collect(),
            };
            client.send_raw(&packet);
            sent += 1;
        }
        // The server is still there after each batch.
        client.inform_round_trip();
        let stats = site.stats();
        assert_eq!(
            stats.inform_acks,
            batch + 1,
            "every INFORM answered: {stats:?}"
        );
    }
    let stats = site.stats();
    // Some noise may happen to be a valid message: everything is
    // accounted for, and most was refused as malformed.
    let handled = stats.malformed
        + stats.unknown_mac
        + stats.ignored
        + stats.offers
        + stats.acks
        + stats.naks
        + stats.releases
        + stats.declines;
    assert_eq!(handled, sent, "{stats:?}");
    assert!(stats.malformed > sent / 2, "{stats:?}");
}

#[test]
fn stop_closes_the_socket_and_a_new_server_can_start() {
    let (mut site, mut client) = started();
    site.leases.insert(mac(), lease(200));
    client.inform_round_trip();
    site.stop_server();
    let listening = |site: &Site| {
        site.server_ns
            .exec(&["ss", "-H", "-u", "-l", "-n", "sport = :67"])
    };
    wait_until("port 67 closed", Duration::from_secs(10), || {
        listening(&site).trim().is_empty().then_some(())
    })
    .unwrap();
    site.start_server();
    assert!(!listening(&site).trim().is_empty());
    client.inform_round_trip();
}

#[test]
fn start_fails_on_a_missing_bridge() {
    let site = Site::new();
    let missing = format!("{}x", site.bridge);
    let result = edgemig_netns::in_netns(site.server_ns.name(), move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            edgemig_dhcp::DhcpServer::start(
                &missing,
                edgemig_dhcp::ServerConfig::new(GATEWAY),
                edgemig_dhcp::LeaseTable::new(),
            )
            .map(|_| ())
        })
    })
    .unwrap();
    match result {
        Err(edgemig_dhcp::SocketError::Sys { what, source, .. }) => {
            assert_eq!(what, "bind the socket to the device");
            assert_eq!(source.raw_os_error(), Some(libc::ENODEV));
        }
        other => panic!("expected a device error, got {other:?}"),
    }
}
