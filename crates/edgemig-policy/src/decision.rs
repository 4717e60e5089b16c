//! The output: a [`Decision`] (stay or migrate), the [`Reason`] and the
//! scores behind it, with a one-or-two-line human explanation for
//! `edgemig vm show` ([`fmt::Display`]) and a JSON form for the API.

use crate::policy::{FollowPolicy, pct};
use crate::score::{Exclusion, SiteScore};
use serde::{Deserialize, Serialize};
use std::fmt;

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Action {
    /// Keep the VM where it is.
    Stay,
    /// Migrate the VM (with handoff) to `to`.
    Migrate {
        /// Destination site.
        to: String,
    },
}

/// Why. Gains are fractions (0.3 = 30 %), times in ms unless named `_s`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Reason {
    /// The policy is out of range (see [`FollowPolicy::validate`]).
    InvalidPolicy {
        /// The validation error.
        error: String,
    },
    /// The observation was rejected (see [`crate::Observation::validate`]).
    InvalidObservation {
        /// The validation error.
        error: String,
    },
    /// The observation is older than the previous one; ignored.
    ClockWentBack {
        /// Time of the previous observation.
        last_ms: u64,
    },
    /// A migration is running; nothing is decided and no hold runs.
    MigrationInProgress,
    /// No client with a weight above zero.
    NoClients,
    /// The current site lacks RTT samples for some clients, so no gain can
    /// be computed.
    CurrentUnmeasured {
        /// How many clients lack a sample.
        count: usize,
        /// The first few of them.
        clients: Vec<String>,
    },
    /// No other site has samples for every client and a cost estimate.
    NoCandidate,
    /// No candidate has a lower mean RTT than the current site.
    CurrentIsBest,
    /// The best candidate's gain is below `min_gain`.
    GainBelowMinimum {
        /// Best candidate.
        site: String,
        /// Its gain.
        gain: f64,
        /// The policy's minimum.
        min_gain: f64,
    },
    /// The best candidate was left recently; returning needs more gain.
    PingPongGuard {
        /// Best candidate.
        site: String,
        /// When the VM left it.
        left_at_ms: u64,
        /// Its gain.
        gain: f64,
        /// The gain a return needs now.
        required_gain: f64,
    },
    /// The best candidate has been better by enough, but not yet for the
    /// hold time.
    Holding {
        /// Best candidate.
        site: String,
        /// Its gain.
        gain: f64,
        /// Since when it has been better by enough.
        since_ms: u64,
        /// Hold time left.
        remaining_ms: u64,
    },
    /// The gain, discounted by the transfer time, is below what is needed.
    CostTooHigh {
        /// Best candidate.
        site: String,
        /// Its gain.
        gain: f64,
        /// Estimated transfer time, s.
        transfer_s: f64,
        /// `gain × (1 - transfer / amortisation)`.
        effective_gain: f64,
        /// What the effective gain must reach.
        required_gain: f64,
    },
    /// Worth it, but the hourly cap is reached.
    CapReached {
        /// Best candidate.
        site: String,
        /// Policy migrations in the last hour.
        migrations: usize,
        /// The cap.
        max_per_hour: u32,
        /// When the oldest of them leaves the window.
        next_slot_ms: u64,
    },
    /// Everything holds: move.
    Migrate {
        /// Destination.
        site: String,
        /// Its gain.
        gain: f64,
        /// How long it has been better by enough.
        held_ms: u64,
        /// Estimated transfer time, s.
        transfer_s: f64,
        /// `gain × (1 - transfer / amortisation)`.
        effective_gain: f64,
        /// What the effective gain had to reach.
        required_gain: f64,
    },
}

/// One decision with its inputs' summary, for `edgemig vm show`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Time of the observation, ms.
    pub at_ms: u64,
    /// Where the VM ran.
    pub current_site: String,
    /// What to do.
    pub action: Action,
    /// Why.
    pub reason: Reason,
    /// Every site's score (empty when the observation was not scored).
    pub scores: Vec<SiteScore>,
    /// Clients with a weight above zero.
    pub weighted_clients: usize,
    /// The policy applied.
    pub policy: FollowPolicy,
}

impl Decision {
    /// Whether the decision is to migrate.
    pub fn is_migrate(&self) -> bool {
        matches!(self.action, Action::Migrate { .. })
    }
}

fn secs(ms: u64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}

fn better(gain: f64) -> String {
    if gain >= 0.0 {
        format!("{}% better", pct(gain))
    } else {
        format!("{}% worse", pct(-gain))
    }
}

/// An instant (unix ms) in words: relative to `now` when known.
fn when(at_ms: u64, now: Option<u64>) -> String {
    match now {
        Some(now) if at_ms <= now => format!("{} ago", secs(now - at_ms)),
        Some(now) => format!("in {}", secs(at_ms - now)),
        None => format!("at unix time {}", secs(at_ms)),
    }
}

impl fmt::Display for Reason {
    /// Instants are absolute here; a [`Decision`] shows them relative to
    /// its own time.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.describe(f, None)
    }
}

impl Reason {
    fn describe(&self, f: &mut fmt::Formatter<'_>, now: Option<u64>) -> fmt::Result {
        match self {
            Reason::InvalidPolicy { error } => write!(f, "invalid policy: {error}"),
            Reason::InvalidObservation { error } => write!(f, "invalid observation: {error}"),
            Reason::ClockWentBack { last_ms } => write!(
                f,
                "observation older than the previous one ({}), ignored",
                when(*last_ms, now)
            ),
            Reason::MigrationInProgress => f.write_str("a migration is in progress"),
            Reason::NoClients => f.write_str("no active clients"),
            Reason::CurrentUnmeasured { count, clients } => write!(
                f,
                "no RTT from the current site for {count} client(s) ({})",
                clients.join(", ")
            ),
            Reason::NoCandidate => {
                f.write_str("no other site has RTT samples for every client and a cost estimate")
            }
            Reason::CurrentIsBest => f.write_str("the current site has the lowest RTT"),
            Reason::GainBelowMinimum {
                site,
                gain,
                min_gain,
            } => write!(
                f,
                "{site} is {}, below the {}% minimum",
                better(*gain),
                pct(*min_gain)
            ),
            Reason::PingPongGuard {
                site,
                left_at_ms,
                gain,
                required_gain,
            } => write!(
                f,
                "{site} is {}, but the VM left it {}; going back needs {}%",
                better(*gain),
                when(*left_at_ms, now),
                pct(*required_gain)
            ),
            Reason::Holding {
                site,
                gain,
                since_ms,
                remaining_ms,
            } => write!(
                f,
                "{site} is {} since {}, holding {} more",
                better(*gain),
                when(*since_ms, now),
                secs(*remaining_ms)
            ),
            Reason::CostTooHigh {
                site,
                gain,
                transfer_s,
                effective_gain,
                required_gain,
            } => write!(
                f,
                "{site} is {}, but a {transfer_s:.1}s transfer leaves {}% over the horizon, below {}%",
                better(*gain),
                pct(*effective_gain),
                pct(*required_gain)
            ),
            Reason::CapReached {
                site,
                migrations,
                max_per_hour,
                next_slot_ms,
            } => write!(
                f,
                "{site} is worth it, but {migrations} of {max_per_hour} migrations per hour are used (next {})",
                when(*next_slot_ms, now)
            ),
            Reason::Migrate {
                site,
                gain,
                held_ms,
                transfer_s,
                effective_gain,
                required_gain,
            } => write!(
                f,
                "{site} is {} for {}; after a {transfer_s:.1}s transfer still {}% (>= {}%)",
                better(*gain),
                secs(*held_ms),
                pct(*effective_gain),
                pct(*required_gain)
            ),
        }
    }
}

impl fmt::Display for Decision {
    /// Line 1: action and reason. Line 2 (when scored): every site's mean.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.action {
            Action::Stay => write!(f, "stay at {}: ", self.current_site)?,
            Action::Migrate { to } => write!(f, "migrate {} -> {to}: ", self.current_site)?,
        }
        self.reason.describe(f, Some(self.at_ms))?;
        if self.scores.is_empty() {
            return Ok(());
        }
        let plural = if self.weighted_clients == 1 { "" } else { "s" };
        write!(f, "\nscores ({} client{plural}):", self.weighted_clients)?;
        for (i, s) in self.scores.iter().enumerate() {
            let sep = if i == 0 { " " } else { ", " };
            write!(f, "{sep}{} ", s.site)?;
            match s.mean_rtt_ms {
                Some(m) => write!(f, "{m:.1} ms")?,
                None => f.write_str("-")?,
            }
            if s.current {
                f.write_str(" (current)")?;
            } else if let Some(Exclusion::MissingSamples { count, .. }) = &s.excluded {
                write!(f, " (no sample for {count} client(s))")?;
            } else if let Some(Exclusion::NoCostEstimate) = &s.excluded {
                f.write_str(" (no cost estimate)")?;
            } else if let Some(g) = s.gain {
                write!(f, " ({})", better(g))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "decision_tests.rs"]
mod tests;
