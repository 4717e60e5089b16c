//! Duplicate-address detection on a site's VM network (RFC 5227 ARP
//! probes): before a migrating VM is given an address at the destination,
//! the agent asks the VM bridge whether any host already answers for it.

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// `ETH_P_ARP`.
const ETH_P_ARP: u16 = 0x0806;
/// ARP opcodes.
const ARP_REQUEST: u16 = 1;
const ARP_REPLY: u16 = 2;
/// Length of an Ethernet/IPv4 ARP packet.
const ARP_LEN: usize = 28;

/// Errors of a probe.
#[derive(Debug, thiserror::Error)]
pub enum ArpProbeError {
    /// The interface does not exist.
    #[error("No network interface {0:?}")]
    NoInterface(String),
    /// A socket call failed.
    #[error("Cannot {what} on {interface}")]
    Socket {
        /// What was attempted.
        what: &'static str,
        /// Interface.
        interface: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Someone answering for a probed address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressInUse {
    /// The MAC address that answered.
    pub mac: String,
}

/// Probes `target` on `interface`: `probes` ARP probes, `interval` apart;
/// returns who answered, if anyone. Blocking: call from `spawn_blocking`.
pub fn probe(
    interface: &str,
    target: Ipv4Addr,
    probes: u32,
    interval: Duration,
) -> Result<Option<AddressInUse>, ArpProbeError> {
    let fail = |what| {
        let interface = interface.to_string();
        move |source| ArpProbeError::Socket {
            what,
            interface,
            source,
        }
    };
    let index = if_index(interface)?;
    // SAFETY: plain socket(2) call; the result is checked before use.
    let raw = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            i32::from(ETH_P_ARP.to_be()),
        )
    };
    if raw < 0 {
        return Err(fail("open a packet socket")(std::io::Error::last_os_error()));
    }
    // SAFETY: `raw` is a fresh, valid descriptor owned by nobody else.
    let socket = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut addr = link_addr(index, [0xff; 6]);
    // SAFETY: `addr` is a valid sockaddr_ll of the size passed.
    let rc = unsafe {
        libc::bind(
            socket.as_raw_fd(),
            (&raw const addr).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(fail("bind a packet socket")(std::io::Error::last_os_error()));
    }
    // The interface's MAC, from the kernel (sysfs may show another
    // namespace's devices when this thread entered a namespace by setns).
    // SAFETY: sockaddr_ll is plain data; all zeroes is a valid value.
    let mut bound: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: `bound` is writable for `len` bytes.
    let rc =
        unsafe { libc::getsockname(socket.as_raw_fd(), (&raw mut bound).cast(), &raw mut len) };
    if rc != 0 {
        return Err(fail("read the address of")(std::io::Error::last_os_error()));
    }
    let mut own_mac = [0u8; 6];
    own_mac.copy_from_slice(&bound.sll_addr[..6]);
    let packet = probe_packet(own_mac, target);
    for _ in 0..probes.max(1) {
        // SAFETY: `packet` and `addr` are valid for the lengths passed.
        let sent = unsafe {
            libc::sendto(
                socket.as_raw_fd(),
                packet.as_ptr().cast(),
                packet.len(),
                0,
                (&raw mut addr).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(fail("send an ARP probe")(std::io::Error::last_os_error()));
        }
        let deadline = Instant::now() + interval;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let mut buf = [0u8; 64];
            let mut poll = libc::pollfd {
                fd: socket.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX).max(1);
            // SAFETY: one valid pollfd.
            let ready = unsafe { libc::poll(&raw mut poll, 1, ms) };
            if ready <= 0 {
                break;
            }
            // SAFETY: `buf` is writable for its length.
            let n =
                unsafe { libc::recv(socket.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            let Ok(n) = usize::try_from(n) else { continue };
            if let Some(mac) = answer_for(&buf[..n], target, own_mac) {
                return Ok(Some(AddressInUse { mac }));
            }
        }
    }
    Ok(None)
}

fn if_index(interface: &str) -> Result<i32, ArpProbeError> {
    let name = std::ffi::CString::new(interface)
        .map_err(|_| ArpProbeError::NoInterface(interface.to_string()))?;
    // SAFETY: `name` is a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    i32::try_from(index)
        .ok()
        .filter(|i| *i > 0)
        .ok_or_else(|| ArpProbeError::NoInterface(interface.to_string()))
}

fn link_addr(index: i32, mac: [u8; 6]) -> libc::sockaddr_ll {
    let mut addr = libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as u16,
        sll_protocol: ETH_P_ARP.to_be(),
        sll_ifindex: index,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 6,
        sll_addr: [0; 8],
    };
    addr.sll_addr[..6].copy_from_slice(&mac);
    addr
}

/// An RFC 5227 probe: who has `target`? (sender address 0.0.0.0).
fn probe_packet(own_mac: [u8; 6], target: Ipv4Addr) -> [u8; ARP_LEN] {
    let mut p = [0u8; ARP_LEN];
    p[0..2].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
    p[2..4].copy_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    p[4] = 6;
    p[5] = 4;
    p[6..8].copy_from_slice(&ARP_REQUEST.to_be_bytes());
    p[8..14].copy_from_slice(&own_mac);
    // sender IP stays 0.0.0.0, target MAC zero
    p[24..28].copy_from_slice(&target.octets());
    p
}

/// The sender's MAC when `packet` shows another host using `target`: a
/// reply from it, or its own probe or announcement for it.
fn answer_for(packet: &[u8], target: Ipv4Addr, own_mac: [u8; 6]) -> Option<String> {
    if packet.len() < ARP_LEN || packet[4] != 6 || packet[5] != 4 {
        return None;
    }
    let op = u16::from_be_bytes([packet[6], packet[7]]);
    let sender_mac: [u8; 6] = packet[8..14].try_into().ok()?;
    let sender_ip = Ipv4Addr::new(packet[14], packet[15], packet[16], packet[17]);
    let target_ip = Ipv4Addr::new(packet[24], packet[25], packet[26], packet[27]);
    if sender_mac == own_mac {
        return None;
    }
    let uses_it = match op {
        ARP_REPLY => sender_ip == target,
        ARP_REQUEST => sender_ip == target || (sender_ip.is_unspecified() && target_ip == target),
        _ => false,
    };
    uses_it.then(|| {
        sender_mac
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TARGET: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 2);

    fn arp(op: u16, mac: [u8; 6], sender: Ipv4Addr, target: Ipv4Addr) -> [u8; ARP_LEN] {
        let mut p = probe_packet(mac, target);
        p[6..8].copy_from_slice(&op.to_be_bytes());
        p[14..18].copy_from_slice(&sender.octets());
        p
    }

    #[test]
    fn replies_and_competing_probes_count_as_in_use() {
        let ours = [2, 0, 0, 0, 0, 1];
        let theirs = [2, 0, 0, 0, 0, 2];
        let reply = arp(ARP_REPLY, theirs, TARGET, Ipv4Addr::new(0, 0, 0, 0));
        assert_eq!(
            answer_for(&reply, TARGET, ours).as_deref(),
            Some("02:00:00:00:00:02")
        );
        let their_probe = arp(ARP_REQUEST, theirs, Ipv4Addr::UNSPECIFIED, TARGET);
        assert!(answer_for(&their_probe, TARGET, ours).is_some());
        // Our own probe echoed back, or other addresses, are not conflicts.
        let our_probe = probe_packet(ours, TARGET);
        assert!(answer_for(&our_probe, TARGET, ours).is_none());
        let other = arp(ARP_REPLY, theirs, Ipv4Addr::new(10, 20, 0, 3), TARGET);
        assert!(answer_for(&other, TARGET, ours).is_none());
        assert!(answer_for(&reply[..10], TARGET, ours).is_none());
    }

    #[test]
    fn missing_interface_is_a_typed_error() {
        let r = probe("emnope0", TARGET, 1, Duration::from_millis(10));
        assert!(matches!(r, Err(ArpProbeError::NoInterface(_))), "{r:?}");
    }
}
