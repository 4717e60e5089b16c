//! What the operator asked for with `edgemig vm policy VM follow`:
//! [`FollowPolicy`], its defaults, limits and validation.
//!
//! JSON shape (every field optional, unknown fields rejected):
//!
//! ```json
//! {"min_gain": 0.3, "hold_ms": 20000, "max_per_hour": 4,
//!  "return_cooldown_ms": 600000, "return_gain_factor": 2.0,
//!  "amortisation_ms": 900000}
//! ```
//!
//! Conflicting policies: the last one stands. The store keeps only the
//! latest policy of a VM and [`crate::Follower::observe`] takes the policy
//! with each observation, so a replaced policy's parameters apply from the
//! next observation on: a hold already running keeps its start time if
//! every gain seen during it meets the new `min_gain` (else it starts
//! over) and ends after the new `hold_ms`.

use crate::history::HISTORY_LEN;
use crate::units::format_duration_ms;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Default minimum relative gain (30 %).
pub const DEFAULT_MIN_GAIN: f64 = 0.30;
/// Default hold time (20 s).
pub const DEFAULT_HOLD_MS: u64 = 20_000;
/// Default cap on policy migrations per sliding hour.
pub const DEFAULT_MAX_PER_HOUR: u32 = 4;
/// Default time after leaving a site during which returning to it needs
/// the larger gain (10 min).
pub const DEFAULT_RETURN_COOLDOWN_MS: u64 = 600_000;
/// Default factor on `min_gain` for a return within the cool-down.
pub const DEFAULT_RETURN_GAIN_FACTOR: f64 = 2.0;
/// Default amortisation horizon of a migration (15 min).
pub const DEFAULT_AMORTISATION_MS: u64 = 900_000;
/// The sliding window of the migration cap.
pub const CAP_WINDOW_MS: u64 = 3_600_000;
/// Longest accepted hold, cool-down and amortisation horizon (1 h for the
/// first two, 24 h for the horizon).
pub const MAX_HOLD_MS: u64 = 3_600_000;
/// Longest accepted return cool-down: the migration history must cover it.
pub const MAX_RETURN_COOLDOWN_MS: u64 = CAP_WINDOW_MS;
/// Longest accepted amortisation horizon.
pub const MAX_AMORTISATION_MS: u64 = 86_400_000;

/// Errors from [`FollowPolicy::validate`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyError {
    /// `min_gain` not in (0, 1).
    #[error("Minimum gain {0} must be above 0 and below 1 (e.g. 0.3 for 30%)")]
    MinGain(f64),
    /// `hold_ms` above [`MAX_HOLD_MS`].
    #[error("Hold {0} ms exceeds the maximum of {MAX_HOLD_MS} ms")]
    Hold(u64),
    /// `max_per_hour` zero or above the history length.
    #[error("Max migrations per hour {0} must be between 1 and {HISTORY_LEN}")]
    MaxPerHour(u32),
    /// `return_cooldown_ms` above [`MAX_RETURN_COOLDOWN_MS`].
    #[error("Return cool-down {0} ms exceeds the maximum of {MAX_RETURN_COOLDOWN_MS} ms")]
    ReturnCooldown(u64),
    /// `return_gain_factor` below 1 or not finite.
    #[error("Return gain factor {0} must be a finite number >= 1")]
    ReturnGainFactor(f64),
    /// `amortisation_ms` zero or above [`MAX_AMORTISATION_MS`].
    #[error("Amortisation horizon {0} ms must be above 0 and at most {MAX_AMORTISATION_MS} ms")]
    Amortisation(u64),
}

/// Parameters of the "follow the user" policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FollowPolicy {
    /// Minimum relative gain `(current - best) / current` of the weighted
    /// mean RTT for a move, in (0, 1); default 0.30.
    pub min_gain: f64,
    /// How long a candidate must beat the current site by `min_gain`
    /// without interruption before it is chosen, ms; default 20 000.
    pub hold_ms: u64,
    /// At most this many policy migrations in any sliding hour, 1..=64;
    /// default 4.
    pub max_per_hour: u32,
    /// For this long after leaving a site, returning to it needs
    /// `return_gain_factor × min_gain`, ms; default 600 000 (10 min).
    pub return_cooldown_ms: u64,
    /// Factor on `min_gain` for a return within the cool-down, >= 1;
    /// default 2. A product >= 1 forbids returns within the cool-down.
    pub return_gain_factor: f64,
    /// How long a new placement is expected to be used: the gain is
    /// discounted by the share of this horizon the transfer takes, ms;
    /// default 900 000 (15 min).
    pub amortisation_ms: u64,
}

impl Default for FollowPolicy {
    fn default() -> Self {
        FollowPolicy {
            min_gain: DEFAULT_MIN_GAIN,
            hold_ms: DEFAULT_HOLD_MS,
            max_per_hour: DEFAULT_MAX_PER_HOUR,
            return_cooldown_ms: DEFAULT_RETURN_COOLDOWN_MS,
            return_gain_factor: DEFAULT_RETURN_GAIN_FACTOR,
            amortisation_ms: DEFAULT_AMORTISATION_MS,
        }
    }
}

impl FollowPolicy {
    /// Check the ranges (serde and the CLI parsers accept any number).
    pub fn validate(&self) -> Result<(), PolicyError> {
        if !(self.min_gain > 0.0 && self.min_gain < 1.0) {
            return Err(PolicyError::MinGain(self.min_gain));
        }
        if self.hold_ms > MAX_HOLD_MS {
            return Err(PolicyError::Hold(self.hold_ms));
        }
        let max_per_hour_ok =
            usize::try_from(self.max_per_hour).is_ok_and(|n| (1..=HISTORY_LEN).contains(&n));
        if !max_per_hour_ok {
            return Err(PolicyError::MaxPerHour(self.max_per_hour));
        }
        if self.return_cooldown_ms > MAX_RETURN_COOLDOWN_MS {
            return Err(PolicyError::ReturnCooldown(self.return_cooldown_ms));
        }
        if !(self.return_gain_factor.is_finite() && self.return_gain_factor >= 1.0) {
            return Err(PolicyError::ReturnGainFactor(self.return_gain_factor));
        }
        if self.amortisation_ms == 0 || self.amortisation_ms > MAX_AMORTISATION_MS {
            return Err(PolicyError::Amortisation(self.amortisation_ms));
        }
        Ok(())
    }

    /// The gain a return to a recently left site needs.
    pub fn return_min_gain(&self) -> f64 {
        self.min_gain * self.return_gain_factor
    }
}

impl fmt::Display for FollowPolicy {
    /// `follow (min gain 30%, hold 20s, max 4/h, return within 10m only with 60%, amortise over 15m)`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "follow (min gain {}%, hold {}, max {}/h, return within {} only with {}%, amortise over {})",
            pct(self.min_gain),
            format_duration_ms(self.hold_ms),
            self.max_per_hour,
            format_duration_ms(self.return_cooldown_ms),
            pct(self.return_min_gain()),
            format_duration_ms(self.amortisation_ms),
        )
    }
}

/// A fraction as a percentage with at most one decimal (`0.3` -> `30`).
pub(crate) fn pct(x: f64) -> String {
    let p = (x * 1000.0).round() / 10.0;
    if p.fract() == 0.0 {
        format!("{p:.0}")
    } else {
        format!("{p:.1}")
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
