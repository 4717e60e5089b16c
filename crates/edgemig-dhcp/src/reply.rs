//! Encoding a [`Reply`] to a client's message as a BOOTREPLY (RFC 2131
//! table 3) with the options of RFC 2132 the lease carries.

use std::net::Ipv4Addr;

use dhcproto::v4::{DhcpOption, Encodable, Flags, HType, Message, MessageType, Opcode};

use crate::decide::{NakReason, Reply};
use crate::lease::Lease;
use crate::request::Request;

/// Replies are padded to the 300 bytes of a BOOTP message: some clients
/// drop shorter ones (RFC 1542 §2.1).
pub const MIN_REPLY_LEN: usize = 300;

/// A reply could not be encoded.
#[derive(Debug, thiserror::Error)]
#[error("Cannot encode the DHCP reply")]
pub struct EncodeError(#[source] dhcproto::error::EncodeError);

fn network_options(msg: &mut Message, lease: &Lease) {
    let opts = msg.opts_mut();
    opts.insert(DhcpOption::SubnetMask(lease.subnet_mask()));
    opts.insert(DhcpOption::Router(vec![lease.gateway()]));
    if !lease.dns().is_empty() {
        opts.insert(DhcpOption::DomainNameServer(lease.dns().to_vec()));
    }
}

fn lease_options(msg: &mut Message, lease: &Lease) {
    let t = lease.lease_time();
    let opts = msg.opts_mut();
    opts.insert(DhcpOption::AddressLeaseTime(t.secs()));
    opts.insert(DhcpOption::Renewal(t.renewal_secs()));
    opts.insert(DhcpOption::Rebinding(t.rebinding_secs()));
}

/// Encodes `reply` to `req` from server `server_id`.
pub fn encode(req: &Request, reply: &Reply, server_id: Ipv4Addr) -> Result<Vec<u8>, EncodeError> {
    let unspecified = Ipv4Addr::UNSPECIFIED;
    let (kind, ciaddr, yiaddr) = match reply {
        Reply::Offer(lease) => (MessageType::Offer, unspecified, lease.address()),
        Reply::Ack(lease) => (MessageType::Ack, req.ciaddr, lease.address()),
        Reply::InformAck(_) => (MessageType::Ack, req.ciaddr, unspecified),
        Reply::Nak(_) => (MessageType::Nak, unspecified, unspecified),
    };
    let mut msg = Message::new_with_id(
        req.xid,
        ciaddr,
        yiaddr,
        unspecified,
        req.giaddr,
        &req.mac.octets(),
    );
    msg.set_opcode(Opcode::BootReply)
        .set_htype(HType::Eth)
        .set_flags(Flags::new(req.flags));
    let opts = msg.opts_mut();
    opts.insert(DhcpOption::MessageType(kind));
    opts.insert(DhcpOption::ServerIdentifier(server_id));
    if let Some(id) = &req.client_id {
        opts.insert(DhcpOption::ClientIdentifier(id.clone()));
    }
    match reply {
        Reply::Offer(lease) | Reply::Ack(lease) => {
            lease_options(&mut msg, lease);
            network_options(&mut msg, lease);
        }
        Reply::InformAck(lease) => network_options(&mut msg, lease),
        Reply::Nak(NakReason::WrongAddress(address)) => {
            msg.opts_mut().insert(DhcpOption::Message(format!(
                "{address} is not the address of this client"
            )));
        }
    }
    let mut bytes = msg.to_vec().map_err(EncodeError)?;
    if bytes.len() < MIN_REPLY_LEN {
        bytes.resize(MIN_REPLY_LEN, 0);
    }
    Ok(bytes)
}
