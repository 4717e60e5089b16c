//! Decoding a client's message into the few facts the server acts on.
//! Input is whatever a guest sends, so this never panics: the fixed header
//! is checked before any field is read, and only the options the server
//! uses (50, 53, 54, 61) are decoded, in one pass over the packet
//! (dhcproto's lazy [`borrowed`](dhcproto::v4::borrowed) parser).

use std::net::Ipv4Addr;

use dhcproto::v4::borrowed::Message;
use dhcproto::v4::{DhcpOption, HType, MAGIC, MessageType, Opcode, OptionCode};

use crate::mac::MacAddr;

/// Length of the fixed BOOTP header plus the magic cookie.
const HEADER_LEN: usize = 240;

/// The client messages the server answers or notes (RFC 2131 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// DHCPDISCOVER: a client looks for servers.
    Discover,
    /// DHCPREQUEST: selecting an offer, init-reboot, renewing or rebinding.
    Request,
    /// DHCPDECLINE: the client found the address in use.
    Decline,
    /// DHCPRELEASE: the client gives its address up.
    Release,
    /// DHCPINFORM: a configured client asks for parameters only.
    Inform,
}

/// Why a packet is not a client message the server can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Shorter than the fixed header and magic cookie.
    #[error("Packet of {0} bytes is shorter than a DHCP header")]
    TooShort(usize),
    /// A BOOTREPLY or an unknown op code.
    #[error("Not a BOOTREQUEST (op {0})")]
    NotRequest(u8),
    /// Not Ethernet with 6-byte hardware addresses.
    #[error("Hardware type {htype} with address length {hlen} is not Ethernet")]
    NotEthernet {
        /// `htype` field.
        htype: u8,
        /// `hlen` field.
        hlen: u8,
    },
    /// No DHCP magic cookie: a plain BOOTP request.
    #[error("No DHCP magic cookie (BOOTP is not served)")]
    NoMagic,
    /// Option 53 is missing or malformed.
    #[error("No valid DHCP message type option")]
    NoMessageType,
    /// A message type a client does not send to a server, or one this
    /// server does not serve (lease query, ...).
    #[error("Message type {0} is not served")]
    Unserved(u8),
}

/// A client's message, reduced to what the server needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Message type.
    pub kind: RequestKind,
    /// Transaction id, echoed in the reply.
    pub xid: u32,
    /// `flags` field (bit 15: the client wants broadcast replies), echoed.
    pub flags: u16,
    /// Client address (set when renewing, rebinding, informing).
    pub ciaddr: Ipv4Addr,
    /// Relay agent address (0 when the client is on the bridge itself).
    pub giaddr: Ipv4Addr,
    /// Client hardware address.
    pub mac: MacAddr,
    /// Option 50, requested address.
    pub requested_ip: Option<Ipv4Addr>,
    /// Option 54, the server the client selected.
    pub server_id: Option<Ipv4Addr>,
    /// Option 61, client identifier, echoed in replies (RFC 6842).
    pub client_id: Option<Vec<u8>>,
}

fn kind_of(t: MessageType) -> Result<RequestKind, ParseError> {
    Ok(match t {
        MessageType::Discover => RequestKind::Discover,
        MessageType::Request => RequestKind::Request,
        MessageType::Decline => RequestKind::Decline,
        MessageType::Release => RequestKind::Release,
        MessageType::Inform => RequestKind::Inform,
        other => return Err(ParseError::Unserved(u8::from(other))),
    })
}

/// Decodes one UDP payload received on port 67.
pub fn parse(packet: &[u8]) -> Result<Request, ParseError> {
    if packet.len() < HEADER_LEN {
        return Err(ParseError::TooShort(packet.len()));
    }
    let msg = Message::new(packet).map_err(|_| ParseError::TooShort(packet.len()))?;
    if msg.opcode() != Opcode::BootRequest {
        return Err(ParseError::NotRequest(packet[0]));
    }
    let (htype, hlen) = (packet[1], packet[2]);
    if msg.htype() != HType::Eth || hlen != 6 {
        return Err(ParseError::NotEthernet { htype, hlen });
    }
    if packet[236..HEADER_LEN] != MAGIC {
        return Err(ParseError::NoMagic);
    }
    // hlen is 6, so chaddr() is bytes 28..34 of a 240-byte packet.
    let mut mac = [0u8; 6];
    mac.copy_from_slice(msg.chaddr());

    let mut message_type = None;
    let mut requested_ip = None;
    let mut server_id = None;
    let mut client_id = None;
    for opt in msg.opts() {
        let code = opt.code();
        if !matches!(
            code,
            OptionCode::MessageType
                | OptionCode::RequestedIpAddress
                | OptionCode::ServerIdentifier
                | OptionCode::ClientIdentifier
        ) {
            continue;
        }
        // A malformed option counts as absent.
        match opt.into_option() {
            Ok(DhcpOption::MessageType(t)) => message_type = Some(t),
            Ok(DhcpOption::RequestedIpAddress(ip)) => requested_ip = Some(ip),
            Ok(DhcpOption::ServerIdentifier(ip)) => server_id = Some(ip),
            Ok(DhcpOption::ClientIdentifier(id)) if !id.is_empty() => client_id = Some(id),
            _ => {}
        }
    }
    let kind = kind_of(message_type.ok_or(ParseError::NoMessageType)?)?;
    Ok(Request {
        kind,
        xid: msg.xid(),
        flags: u16::from(msg.flags()),
        ciaddr: msg.ciaddr(),
        giaddr: msg.giaddr(),
        mac: MacAddr::new(mac),
        requested_ip,
        server_id,
        client_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_packets::{MAC, SERVER, XID, bytes, message, with};
    use dhcproto::v4::Flags;

    #[test]
    fn reads_what_the_server_needs() {
        let mut msg = message(MessageType::Request);
        msg.set_flags(Flags::default().set_broadcast())
            .set_ciaddr(Ipv4Addr::new(10, 10, 0, 9));
        let msg = with(msg, DhcpOption::RequestedIpAddress([10, 10, 0, 23].into()));
        let msg = with(msg, DhcpOption::ServerIdentifier(SERVER));
        let msg = with(msg, DhcpOption::ClientIdentifier(vec![1, 2, 3]));
        let msg = with(msg, DhcpOption::Hostname("guest".into()));
        let req = parse(&bytes(&msg)).unwrap();
        assert_eq!(
            req,
            Request {
                kind: RequestKind::Request,
                xid: XID,
                flags: 0x8000,
                ciaddr: Ipv4Addr::new(10, 10, 0, 9),
                giaddr: Ipv4Addr::UNSPECIFIED,
                mac: MacAddr::new(MAC),
                requested_ip: Some(Ipv4Addr::new(10, 10, 0, 23)),
                server_id: Some(SERVER),
                client_id: Some(vec![1, 2, 3]),
            }
        );
    }

    #[test]
    fn every_client_message_type() {
        for (t, kind) in [
            (MessageType::Discover, RequestKind::Discover),
            (MessageType::Request, RequestKind::Request),
            (MessageType::Decline, RequestKind::Decline),
            (MessageType::Release, RequestKind::Release),
            (MessageType::Inform, RequestKind::Inform),
        ] {
            assert_eq!(parse(&bytes(&message(t))).unwrap().kind, kind);
        }
        for t in [
            MessageType::Offer,
            MessageType::Ack,
            MessageType::Nak,
            MessageType::LeaseQuery,
            MessageType::Unknown(200),
        ] {
            assert_eq!(
                parse(&bytes(&message(t))),
                Err(ParseError::Unserved(u8::from(t)))
            );
        }
    }

    #[test]
    fn header_problems_are_named() {
        let good = bytes(&message(MessageType::Discover));
        assert_eq!(parse(&good[..239]), Err(ParseError::TooShort(239)));
        let mut reply = good.clone();
        reply[0] = 2;
        assert_eq!(parse(&reply), Err(ParseError::NotRequest(2)));
        let mut long_hw = good.clone();
        long_hw[2] = 255;
        assert_eq!(
            parse(&long_hw),
            Err(ParseError::NotEthernet {
                htype: 1,
                hlen: 255
            })
        );
        let mut bootp = good.clone();
        bootp[236] = 0;
        assert_eq!(parse(&bootp), Err(ParseError::NoMagic));
        let mut untyped = good[..240].to_vec();
        untyped.push(255);
        assert_eq!(parse(&untyped), Err(ParseError::NoMessageType));
    }

    #[test]
    fn malformed_options_count_as_absent() {
        let mut packet = bytes(&message(MessageType::Discover));
        // Drop the End option, then append: a 3-byte requested address, an
        // empty client id, an FQDN option shorter than its fixed part.
        assert_eq!(packet.pop(), Some(255));
        packet.extend([50, 3, 10, 10, 0, 81, 1, 0, 61, 0, 255]);
        let req = parse(&packet).unwrap();
        assert_eq!(req.kind, RequestKind::Discover);
        assert_eq!((req.requested_ip, req.client_id), (None, None));
    }

    #[test]
    fn long_options_are_concatenated() {
        // RFC 3396: a client id split over two option 61 instances.
        let mut packet = bytes(&message(MessageType::Discover));
        assert_eq!(packet.pop(), Some(255));
        packet.extend([61, 2, 1, 2, 61, 1, 3, 255]);
        assert_eq!(parse(&packet).unwrap().client_id, Some(vec![1, 2, 3]));
    }
}
