//! The decision state machine: [`Follower::observe`] turns an
//! [`Observation`] and the current [`FollowPolicy`] into a [`Decision`].
//!
//! Each observation goes through these steps; the first that stops gives
//! the reason ("hold cleared" means the running hold, if any, restarts
//! from scratch next time):
//!
//! 1. invalid policy or observation, clock going back, or a migration in
//!    progress: stay (hold cleared, except for a clock going back, which
//!    leaves the state untouched);
//! 2. the current site changed since the last observation without being
//!    the destination of the last policy move: recorded as an external
//!    move; any site change clears the hold (gains were relative to the
//!    old site);
//! 3. scoring ([`crate::score`]): no weighted client, the current site
//!    unmeasured, no candidate, or no candidate better than the current
//!    site: stay, hold cleared;
//! 4. **minimum gain** and **ping-pong guard**: the best candidate must
//!    gain `min_gain`; if the VM left it less than `return_cooldown_ms`
//!    ago it must gain `min_gain × return_gain_factor` instead. Otherwise
//!    stay, hold cleared;
//! 5. **hold (hysteresis)**: the same candidate must have passed step 4
//!    at every observation for `hold_ms`; a different best candidate
//!    restarts the hold, and so does a run whose lowest gain is below
//!    what step 4 requires now (a replaced policy with a larger
//!    `min_gain`, or a guard that now applies). Until then: stay, holding;
//! 6. **cost**: the transfer time `T = bytes × 8 / (path_mbit × 10⁶)`
//!    delays the benefit, so over the amortisation horizon `H` the gain is
//!    worth `gain × (1 - T/H)`; this effective gain must still reach the
//!    required gain of step 4 (so `T >= H` never migrates). Otherwise stay,
//!    the hold keeps running (a larger gain may pay later);
//! 7. **hourly cap**: fewer than `max_per_hour` policy moves in the
//!    sliding window `(now - 1 h, now]`. Otherwise stay, the hold keeps
//!    running;
//! 8. migrate; the move is recorded (attempts count against the cap even
//!    if they fail) and the hold cleared.
//!
//! Only the best candidate is considered: if it is guarded or too
//! expensive the VM stays, even if a worse site would qualify. This keeps
//! the decision easy to explain and never moves the VM to a site that is
//! not the best.
//!
//! Hold semantics: observations are discrete, so "better for `hold_ms`"
//! means every observation from `since_ms` to now had this candidate
//! best with enough gain, and `now - since_ms >= hold_ms`.
//!
//! The state (hold, bounded history, last decision) is serde-serialisable
//! so the agent can persist it; observations themselves are not kept.

use crate::decision::{Action, Decision, Reason};
use crate::history::{History, MigrationRecord};
use crate::observation::Observation;
use crate::policy::{CAP_WINDOW_MS, FollowPolicy};
use crate::score::{Exclusion, Scores};
use serde::{Deserialize, Serialize};

/// A candidate that has been better by enough since `since_ms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    /// The candidate site.
    pub site: String,
    /// First observation of the uninterrupted run.
    pub since_ms: u64,
    /// The lowest gain seen during the run.
    pub lowest_gain: f64,
}

/// The follower's whole state for one VM.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Follower {
    pending: Option<Pending>,
    history: History,
    last_at_ms: Option<u64>,
    last_site: Option<String>,
    last_decision: Option<Decision>,
}

impl Follower {
    /// A follower with no history.
    pub fn new() -> Self {
        Follower::default()
    }

    /// The running hold, if any.
    pub fn pending(&self) -> Option<&Pending> {
        self.pending.as_ref()
    }

    /// The recent moves.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// The last decision, for `edgemig vm show`.
    pub fn last_decision(&self) -> Option<&Decision> {
        self.last_decision.as_ref()
    }

    /// Decide what to do with the VM given `obs`, under `policy` (the
    /// latest one set for the VM: the last one stands).
    pub fn observe(&mut self, obs: &Observation, policy: &FollowPolicy) -> Decision {
        let d = self.decide(obs, policy);
        self.last_decision = Some(d.clone());
        d
    }

    fn decide(&mut self, obs: &Observation, policy: &FollowPolicy) -> Decision {
        let mut d = Decision {
            at_ms: obs.at_ms,
            current_site: obs.current_site.clone(),
            action: Action::Stay,
            reason: Reason::NoClients,
            scores: Vec::new(),
            weighted_clients: 0,
            policy: policy.clone(),
        };
        if let Some(last_ms) = self.last_at_ms.filter(|&l| obs.at_ms < l) {
            d.reason = Reason::ClockWentBack { last_ms };
            return d;
        }
        self.last_at_ms = Some(obs.at_ms);
        if let Err(e) = policy.validate() {
            self.pending = None;
            d.reason = Reason::InvalidPolicy {
                error: e.to_string(),
            };
            return d;
        }
        if let Err(e) = obs.validate() {
            self.pending = None;
            d.reason = Reason::InvalidObservation {
                error: e.to_string(),
            };
            return d;
        }
        self.note_site(obs);
        if obs.migration_in_progress {
            self.pending = None;
            d.reason = Reason::MigrationInProgress;
            return d;
        }

        let scores = Scores::of(obs);
        d.weighted_clients = scores.weighted_clients;
        let reason = self.judge(obs, policy, &scores);
        d.scores = scores.sites;
        if let Reason::Migrate { site, .. } = &reason {
            d.action = Action::Migrate { to: site.clone() };
            self.history.push(MigrationRecord {
                at_ms: obs.at_ms,
                from: obs.current_site.clone(),
                to: site.clone(),
                by_policy: true,
            });
            self.pending = None;
        }
        d.reason = reason;
        d
    }

    /// Step 2: follow the current site, recording moves we did not decide.
    fn note_site(&mut self, obs: &Observation) {
        let Some(last) = self.last_site.replace(obs.current_site.clone()) else {
            return;
        };
        if last == obs.current_site {
            return;
        }
        self.pending = None;
        let ours = self
            .history
            .last()
            .is_some_and(|r| r.by_policy && r.from == last && r.to == obs.current_site);
        if !ours {
            self.history.push(MigrationRecord {
                at_ms: obs.at_ms,
                from: last,
                to: obs.current_site.clone(),
                by_policy: false,
            });
        }
    }

    /// Steps 3 to 8 (without recording the move).
    fn judge(&mut self, obs: &Observation, policy: &FollowPolicy, scores: &Scores) -> Reason {
        let now = obs.at_ms;
        if scores.weighted_clients == 0 {
            self.pending = None;
            return Reason::NoClients;
        }
        let current_mean = scores.current().and_then(|c| match &c.excluded {
            Some(Exclusion::MissingSamples { count, clients }) => Some(Err((*count, clients))),
            _ => c.mean_rtt_ms.map(Ok),
        });
        match current_mean {
            Some(Ok(_)) => {}
            Some(Err((count, clients))) => {
                self.pending = None;
                return Reason::CurrentUnmeasured {
                    count,
                    clients: clients.clone(),
                };
            }
            None => {
                self.pending = None;
                return Reason::CurrentUnmeasured {
                    count: 0,
                    clients: Vec::new(),
                };
            }
        }
        let Some(best) = scores.best_candidate() else {
            self.pending = None;
            return Reason::NoCandidate;
        };
        let gain = match best.gain {
            Some(g) if g > 0.0 => g,
            _ => {
                self.pending = None;
                return Reason::CurrentIsBest;
            }
        };
        let site = best.site.clone();

        // Step 4: minimum gain, ping-pong guard.
        if gain < policy.min_gain {
            self.pending = None;
            return Reason::GainBelowMinimum {
                site,
                gain,
                min_gain: policy.min_gain,
            };
        }
        let mut required_gain = policy.min_gain;
        if let Some(left) = self
            .history
            .left_within(&site, now, policy.return_cooldown_ms)
        {
            required_gain = policy.return_min_gain();
            if gain < required_gain {
                self.pending = None;
                return Reason::PingPongGuard {
                    site,
                    gain,
                    left_at_ms: left.at_ms,
                    required_gain,
                };
            }
        }

        // Step 5: hold. A run that saw a gain below what is required now
        // (the policy was replaced, or a guard applies) starts over.
        let since_ms = match &mut self.pending {
            Some(p) if p.site == site && p.lowest_gain >= required_gain => {
                p.lowest_gain = p.lowest_gain.min(gain);
                p.since_ms
            }
            _ => {
                self.pending = Some(Pending {
                    site: site.clone(),
                    since_ms: now,
                    lowest_gain: gain,
                });
                now
            }
        };
        let held_ms = now.saturating_sub(since_ms);
        if held_ms < policy.hold_ms {
            return Reason::Holding {
                site,
                gain,
                since_ms,
                remaining_ms: policy.hold_ms.saturating_sub(held_ms),
            };
        }

        // Step 6: cost. Candidates always have an estimate (see score).
        let Some(transfer_s) = best.transfer_s else {
            self.pending = None;
            return Reason::NoCandidate;
        };
        let horizon_s = policy.amortisation_ms as f64 / 1000.0;
        let effective_gain = gain * (1.0 - transfer_s / horizon_s).max(0.0);
        if effective_gain < required_gain {
            return Reason::CostTooHigh {
                site,
                gain,
                transfer_s,
                effective_gain,
                required_gain,
            };
        }

        // Step 7: hourly cap.
        let window = self.history.policy_moves_within(now, CAP_WINDOW_MS);
        let max = usize::try_from(policy.max_per_hour).unwrap_or(usize::MAX);
        if window.count >= max {
            return Reason::CapReached {
                site,
                migrations: window.count,
                max_per_hour: policy.max_per_hour,
                next_slot_ms: window
                    .oldest_at_ms
                    .unwrap_or(now)
                    .saturating_add(CAP_WINDOW_MS),
            };
        }

        Reason::Migrate {
            site,
            gain,
            held_ms,
            transfer_s,
            effective_gain,
            required_gain,
        }
    }
}

#[cfg(test)]
#[path = "follower_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "follower_properties_tests.rs"]
mod properties_tests;
