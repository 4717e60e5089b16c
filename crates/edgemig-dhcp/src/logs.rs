//! Log lines about the packets the server handles. A guest can trigger
//! them at will, so each kind has its own rate limit.

use std::time::{Duration, Instant};

use crate::decide::{Decision, Ignored, Noted, Reply};
use crate::handler::Handled;
use crate::ratelimit::RateLimit;

/// Log lines of one kind per [`LOG_PERIOD`].
pub const LOG_BURST: u32 = 10;
/// Window of the log rate limit.
pub const LOG_PERIOD: Duration = Duration::from_secs(60);

/// Rate limits of the log lines guests can trigger, one per kind.
#[derive(Debug)]
pub struct Logs {
    malformed: RateLimit,
    answered: RateLimit,
    unknown: RateLimit,
    nak: RateLimit,
    noted: RateLimit,
    ignored: RateLimit,
    failed: RateLimit,
}

impl Default for Logs {
    fn default() -> Self {
        let limit = || RateLimit::new(LOG_BURST, LOG_PERIOD);
        Self {
            malformed: limit(),
            answered: limit(),
            unknown: limit(),
            nak: limit(),
            noted: limit(),
            ignored: limit(),
            failed: limit(),
        }
    }
}

impl Logs {
    /// Logs what became of one packet, within the rate limits. Offers and
    /// ACKs are the normal case and logged at debug level; they are
    /// limited too, as a guest can ask for them as often as it likes.
    pub fn report(&mut self, handled: &Handled, sent: Option<&std::io::Error>) {
        let now = Instant::now();
        let (request, decision) = match handled {
            Handled::Malformed(e) => {
                if let Some(suppressed) = self.malformed.check(now) {
                    tracing::debug!(reason = %e, suppressed, "DHCP: malformed packet ignored");
                }
                return;
            }
            Handled::Decided {
                request, decision, ..
            } => (request, decision),
        };
        let mac = request.mac;
        if let Some(error) = sent {
            if let Some(suppressed) = self.failed.check(now) {
                tracing::warn!(%mac, %error, suppressed, "DHCP: cannot send the reply");
            }
            return;
        }
        if let Handled::Decided {
            outgoing: Some(Err(error)),
            ..
        } = handled
        {
            if let Some(suppressed) = self.failed.check(now) {
                tracing::warn!(%mac, error = %error, suppressed, "DHCP: cannot encode the reply");
            }
            return;
        }
        match decision {
            Decision::Reply { reply, to } => match reply {
                Reply::Nak(reason) => {
                    if let Some(suppressed) = self.nak.check(now) {
                        tracing::info!(%mac, ?reason, suppressed, "DHCP: NAK sent");
                    }
                }
                Reply::Offer(lease) | Reply::Ack(lease) | Reply::InformAck(lease) => {
                    if let Some(suppressed) = self.answered.check(now) {
                        tracing::debug!(%mac, address = %lease.address(), ?to, kind = ?request.kind, suppressed, "DHCP: answered");
                    }
                }
            },
            Decision::Ignore(Ignored::UnknownMac) => {
                if let Some(suppressed) = self.unknown.check(now) {
                    tracing::info!(%mac, kind = ?request.kind, suppressed, "DHCP: no lease for this MAC, not answered");
                }
            }
            Decision::Ignore(why) => {
                if let Some(suppressed) = self.ignored.check(now) {
                    tracing::debug!(%mac, ?why, suppressed, "DHCP: not answered");
                }
            }
            Decision::Note(Noted::Released(address)) => {
                if let Some(suppressed) = self.noted.check(now) {
                    tracing::info!(%mac, %address, suppressed, "DHCP: client released its address (static lease kept)");
                }
            }
            Decision::Note(Noted::Declined(address)) => {
                if let Some(suppressed) = self.noted.check(now) {
                    tracing::warn!(%mac, ?address, suppressed, "DHCP: client declined its address: another host uses it on the VM network");
                }
            }
        }
    }
}
