//! Counters of what the server did, for the agent's metrics and for tests
//! that must know a message was handled (and ignored) rather than lost. A
//! message is counted before its reply is sent.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// What happened to one received packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Not a DHCP client message (truncated, garbage, BOOTP, a reply).
    Malformed,
    /// From a MAC without a lease.
    UnknownMac,
    /// Not for this server, or not answerable (relayed, another server,
    /// no address, an INFORM from outside the network).
    Ignored,
    /// DHCPOFFER sent.
    Offer,
    /// DHCPACK with a lease sent.
    Ack,
    /// DHCPACK to a DHCPINFORM sent.
    InformAck,
    /// DHCPNAK sent.
    Nak,
    /// DHCPRELEASE received.
    Release,
    /// DHCPDECLINE received.
    Decline,
    /// A reply could not be encoded or sent (counted under its kind too).
    SendFailed,
}

const EVENTS: usize = 10;

fn slot(event: Event) -> usize {
    match event {
        Event::Malformed => 0,
        Event::UnknownMac => 1,
        Event::Ignored => 2,
        Event::Offer => 3,
        Event::Ack => 4,
        Event::InformAck => 5,
        Event::Nak => 6,
        Event::Release => 7,
        Event::Decline => 8,
        Event::SendFailed => 9,
    }
}

/// Shared counters of one server (cloning gives another handle).
#[derive(Debug, Clone, Default)]
pub struct Stats {
    counts: Arc<[AtomicU64; EVENTS]>,
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Packets that were not DHCP client messages.
    pub malformed: u64,
    /// Messages from MACs without a lease.
    pub unknown_mac: u64,
    /// Messages not for this server or not answerable.
    pub ignored: u64,
    /// DHCPOFFERs sent.
    pub offers: u64,
    /// DHCPACKs with a lease sent.
    pub acks: u64,
    /// DHCPACKs to DHCPINFORMs sent.
    pub inform_acks: u64,
    /// DHCPNAKs sent.
    pub naks: u64,
    /// DHCPRELEASEs received.
    pub releases: u64,
    /// DHCPDECLINEs received.
    pub declines: u64,
    /// Replies that could not be encoded or sent (also counted under their
    /// kind).
    pub send_failed: u64,
}

impl Stats {
    /// Counters at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one `event`.
    pub fn record(&self, event: Event) {
        self.counts[slot(event)].fetch_add(1, Ordering::Relaxed);
    }

    /// The count of `event`.
    pub fn get(&self, event: Event) -> u64 {
        self.counts[slot(event)].load(Ordering::Relaxed)
    }

    /// All counters.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            malformed: self.get(Event::Malformed),
            unknown_mac: self.get(Event::UnknownMac),
            ignored: self.get(Event::Ignored),
            offers: self.get(Event::Offer),
            acks: self.get(Event::Ack),
            inform_acks: self.get(Event::InformAck),
            naks: self.get(Event::Nak),
            releases: self.get(Event::Release),
            declines: self.get(Event::Decline),
            send_failed: self.get(Event::SendFailed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_has_its_own_counter() {
        let stats = Stats::new();
        let other = stats.clone();
        let all = [
            Event::Malformed,
            Event::UnknownMac,
            Event::Ignored,
            Event::Offer,
            Event::Ack,
            Event::InformAck,
            Event::Nak,
            Event::Release,
            Event::Decline,
            Event::SendFailed,
        ];
        for (i, event) in all.iter().enumerate() {
            for _ in 0..=i {
                other.record(*event);
            }
        }
        for (i, event) in all.iter().enumerate() {
            assert_eq!(stats.get(*event), i as u64 + 1, "{event:?}");
        }
        let s = stats.snapshot();
        assert_eq!((s.malformed, s.send_failed), (1, 10));
    }
}
