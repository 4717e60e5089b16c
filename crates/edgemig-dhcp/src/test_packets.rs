//! Client messages for the unit tests, built with dhcproto's encoder the
//! way a DHCP client builds them.

use std::net::Ipv4Addr;

use dhcproto::v4::{Decodable, Decoder, DhcpOption, Encodable, Message, MessageType};

use crate::lease::Lease;
use crate::mac::MacAddr;

pub const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
pub const SERVER: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 1);
pub const ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 23);
pub const XID: u32 = 0x1234_5678;

pub fn mac() -> MacAddr {
    MacAddr::new(MAC)
}

pub fn lease() -> Lease {
    Lease::new(ADDRESS, 24, SERVER).unwrap()
}

/// A client message of type `kind` from [`MAC`].
pub fn message(kind: MessageType) -> Message {
    let mut msg = Message::new_with_id(
        XID,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &MAC,
    );
    msg.opts_mut().insert(DhcpOption::MessageType(kind));
    msg
}

/// `msg` with option `opt` added.
pub fn with(mut msg: Message, opt: DhcpOption) -> Message {
    msg.opts_mut().insert(opt);
    msg
}

pub fn bytes(msg: &Message) -> Vec<u8> {
    msg.to_vec().unwrap()
}

/// Decodes one of the server's replies (our own output: trusted).
pub fn decode(bytes: &[u8]) -> Message {
    Message::decode(&mut Decoder::new(bytes)).unwrap()
}
