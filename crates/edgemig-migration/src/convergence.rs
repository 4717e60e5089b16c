//! When precopy does not converge: a small escalation state machine fed
//! with periodic `query-migrate` samples.
//!
//! Stages only move forward, each action is emitted at most once, so a
//! flapping guest cannot make the decisions oscillate:
//!
//! ```text
//! Watching --struggling--> AutoConverge --still struggling after budget--> Postcopy
//!            (EnableAutoConverge,          (StartPostcopy, only if the plan
//!             or nothing if already on)      allows postcopy)
//! ```
//!
//! A sample shows **pressure** when the dirty rate (bytes/s × 8) exceeds
//! [`ConvergenceConfig::dirty_ratio_threshold`] × throughput. The migration
//! is **stalled** when the remaining bytes have not dropped by
//! [`ConvergenceConfig::min_progress`] for
//! [`ConvergenceConfig::stall_iterations`] dirty-sync iterations. It is
//! **struggling** when [`ConvergenceConfig::pressure_samples`] consecutive
//! samples show pressure, or it is stalled, and the remaining bytes do not
//! already fit in the downtime limit (then QEMU switches over by itself).
//!
//! In the auto-converge stage, postcopy is started when the current sample
//! still shows pressure or a stall and one of these holds:
//! `postcopy_after` elapsed since the escalation; the CPU throttle sat at
//! or above [`MAX_THROTTLE_PERCENT`] for `throttle_iterations` iterations;
//! or no progress for `stall_iterations` iterations since the escalation.

use crate::plan::MigrationPlan;
use std::time::Duration;

/// QEMU's `max-cpu-throttle` default: auto-converge cannot go further.
pub const MAX_THROTTLE_PERCENT: u8 = 99;

/// One `query-migrate` sample, already converted to plain numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MigrationSample {
    /// Time since the memory migration started.
    pub elapsed: Duration,
    /// `ram.transferred`, bytes.
    pub transferred_bytes: u64,
    /// `ram.remaining`, bytes.
    pub remaining_bytes: u64,
    /// `ram.dirty-pages-rate`, pages per second.
    pub dirty_pages_rate: u64,
    /// `ram.page-size`, bytes.
    pub page_size: u64,
    /// `ram.mbps` × 1e6, bit/s.
    pub throughput_bps: u64,
    /// `ram.dirty-sync-count`: the precopy iteration.
    pub iteration: u64,
    /// `cpu-throttle-percentage`, when auto-converge throttles.
    pub cpu_throttle_percentage: Option<u8>,
}

impl MigrationSample {
    /// Dirty rate in bit/s.
    pub fn dirty_rate_bps(&self) -> u64 {
        self.dirty_pages_rate
            .saturating_mul(self.page_size)
            .saturating_mul(8)
    }
}

/// What the caller should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvergenceAction {
    /// Nothing.
    None,
    /// `migrate-set-capabilities auto-converge=true`.
    EnableAutoConverge,
    /// `migrate-start-postcopy`.
    StartPostcopy,
}

/// An action and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvergenceDecision {
    /// What to do.
    pub action: ConvergenceAction,
    /// One line for logs.
    pub reason: String,
}

/// How far the escalation went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvergenceStage {
    /// No help needed so far.
    Watching,
    /// Relying on auto-converge since `since` (iteration `since_iteration`).
    AutoConverge {
        /// Sample time of the escalation.
        since: Duration,
        /// Iteration of the escalation.
        since_iteration: u64,
    },
    /// Postcopy requested; nothing more to decide.
    Postcopy,
}

/// Tunables of the monitor.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvergenceConfig {
    /// Pressure when dirty bit/s > this × throughput bit/s (default 0.8).
    /// With zstd the throughput is measured after compression, so this
    /// errs towards seeing pressure early.
    pub dirty_ratio_threshold: f64,
    /// Consecutive pressure samples that mean "struggling" (default 3).
    pub pressure_samples: u32,
    /// Iterations without progress that mean "stalled" (default 3).
    pub stall_iterations: u64,
    /// Fraction remaining bytes must drop to count as progress (0.02).
    pub min_progress: f64,
    /// Time in the auto-converge stage before postcopy (default 30 s).
    pub postcopy_after: Duration,
    /// Iterations at maximal throttle before postcopy (default 2).
    pub throttle_iterations: u64,
    /// Whether the plan already enabled auto-converge.
    pub auto_converge_enabled: bool,
    /// Whether postcopy may be started (`postcopy-ram` on, no multifd).
    pub postcopy_allowed: bool,
    /// QEMU's downtime limit: remaining data that fits in it will converge.
    pub downtime_limit: Duration,
}

impl Default for ConvergenceConfig {
    fn default() -> Self {
        ConvergenceConfig {
            dirty_ratio_threshold: 0.8,
            pressure_samples: 3,
            stall_iterations: 3,
            min_progress: 0.02,
            postcopy_after: Duration::from_secs(30),
            throttle_iterations: 2,
            auto_converge_enabled: false,
            postcopy_allowed: false,
            downtime_limit: crate::options::DEFAULT_MAX_DOWNTIME,
        }
    }
}

impl ConvergenceConfig {
    /// Defaults, with the plan's auto-converge, postcopy and downtime.
    /// Postcopy is only allowed when the plan has no multifd (QEMU 10.0).
    pub fn from_plan(plan: &MigrationPlan) -> Self {
        ConvergenceConfig {
            auto_converge_enabled: plan.auto_converge,
            postcopy_allowed: plan.postcopy_allowed && plan.multifd_channels.is_none(),
            downtime_limit: Duration::from_millis(plan.downtime_limit_ms),
            ..Default::default()
        }
    }
}

/// The escalation state machine.
#[derive(Debug, Clone)]
pub struct ConvergenceMonitor {
    cfg: ConvergenceConfig,
    stage: ConvergenceStage,
    pressure_streak: u32,
    best_remaining: Option<u64>,
    best_iteration: u64,
    max_throttle_iterations: u64,
    last_throttle_iteration: Option<u64>,
}

impl ConvergenceMonitor {
    /// A monitor in the `Watching` stage.
    pub fn new(cfg: ConvergenceConfig) -> Self {
        ConvergenceMonitor {
            cfg,
            stage: ConvergenceStage::Watching,
            pressure_streak: 0,
            best_remaining: None,
            best_iteration: 0,
            max_throttle_iterations: 0,
            last_throttle_iteration: None,
        }
    }

    /// Current stage.
    pub fn stage(&self) -> ConvergenceStage {
        self.stage
    }

    /// The configuration in use.
    pub fn config(&self) -> &ConvergenceConfig {
        &self.cfg
    }

    /// Feed one sample; returns what to do now.
    pub fn observe(&mut self, s: &MigrationSample) -> ConvergenceDecision {
        if self.stage == ConvergenceStage::Postcopy {
            return decide(ConvergenceAction::None, "postcopy already requested");
        }
        let dirty = s.dirty_rate_bps() as f64;
        let thr = s.throughput_bps as f64;
        let ratio = if thr > 0.0 { dirty / thr } else { 0.0 };
        let pressure = thr > 0.0 && ratio > self.cfg.dirty_ratio_threshold;
        self.pressure_streak = if pressure {
            self.pressure_streak.saturating_add(1)
        } else {
            0
        };
        let progressed = self.best_remaining.is_none_or(|best| {
            (s.remaining_bytes as f64) < best as f64 * (1.0 - self.cfg.min_progress)
        });
        if progressed {
            self.best_remaining = Some(s.remaining_bytes);
            self.best_iteration = s.iteration;
        }
        let stalled = s.iteration
            >= self
                .best_iteration
                .saturating_add(self.cfg.stall_iterations);
        let fits = (s.remaining_bytes as f64) * 8.0 <= thr * self.cfg.downtime_limit.as_secs_f64();
        let facts = format!(
            "dirty/throughput {ratio:.2}, remaining {} MiB, iteration {}",
            s.remaining_bytes >> 20,
            s.iteration
        );

        match self.stage {
            ConvergenceStage::Watching => {
                let struggling =
                    !fits && (self.pressure_streak >= self.cfg.pressure_samples || stalled);
                if !struggling {
                    return decide(ConvergenceAction::None, format!("converging: {facts}"));
                }
                self.stage = ConvergenceStage::AutoConverge {
                    since: s.elapsed,
                    since_iteration: s.iteration,
                };
                let why = if stalled {
                    "no progress"
                } else {
                    "dirty rate outruns the paths"
                };
                if self.cfg.auto_converge_enabled {
                    decide(
                        ConvergenceAction::None,
                        format!("{why} ({facts}); relying on auto-converge, already on"),
                    )
                } else {
                    self.cfg.auto_converge_enabled = true;
                    decide(
                        ConvergenceAction::EnableAutoConverge,
                        format!("{why} ({facts}); enabling auto-converge"),
                    )
                }
            }
            ConvergenceStage::AutoConverge {
                since,
                since_iteration,
            } => {
                if s.cpu_throttle_percentage
                    .is_some_and(|t| t >= MAX_THROTTLE_PERCENT)
                    && self.last_throttle_iteration != Some(s.iteration)
                {
                    self.last_throttle_iteration = Some(s.iteration);
                    self.max_throttle_iterations += 1;
                }
                let still_bad = !fits && (pressure || stalled);
                let budget = s.elapsed.saturating_sub(since) >= self.cfg.postcopy_after;
                let throttled = self.max_throttle_iterations >= self.cfg.throttle_iterations;
                let no_progress = s.iteration
                    >= self
                        .best_iteration
                        .max(since_iteration)
                        .saturating_add(self.cfg.stall_iterations);
                if !(still_bad && (budget || throttled || no_progress)) {
                    return decide(
                        ConvergenceAction::None,
                        format!("auto-converge at work: {facts}"),
                    );
                }
                let why = if throttled {
                    "throttle at maximum"
                } else if no_progress {
                    "no progress"
                } else {
                    "time budget spent"
                };
                if self.cfg.postcopy_allowed {
                    self.stage = ConvergenceStage::Postcopy;
                    decide(
                        ConvergenceAction::StartPostcopy,
                        format!("auto-converge not enough, {why} ({facts}); starting postcopy"),
                    )
                } else {
                    decide(
                        ConvergenceAction::None,
                        format!("auto-converge not enough, {why} ({facts}); postcopy not allowed"),
                    )
                }
            }
            ConvergenceStage::Postcopy => {
                decide(ConvergenceAction::None, "postcopy already requested")
            }
        }
    }
}

fn decide(action: ConvergenceAction, reason: impl Into<String>) -> ConvergenceDecision {
    ConvergenceDecision {
        action,
        reason: reason.into(),
    }
}

#[cfg(test)]
#[path = "convergence_tests.rs"]
mod tests;
