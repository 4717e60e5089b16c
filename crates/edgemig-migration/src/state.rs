//! The migration lifecycle: states with their data and one checked
//! [`MigrationState::step`] function.
//!
//! ```text
//! Preparing --DestinationReady--> DiskSync{mirror_ready: false}
//! DiskSync  --MirrorReady-------> DiskSync{mirror_ready: true}
//! DiskSync{ready} --MemoryStarted--> Memory
//! Memory    --SwitchoverStarted{at}--> Switchover{at}
//! Switchover --DestinationRunning{at}--> Network{switchover_at, running_at}
//! Network   --NetworkDone-------> Completed
//! any non-terminal --Error(r)---> Failed{reason, phase, source_stopped}
//! any non-terminal --Cancel-----> Cancelled{phase, source_stopped}
//! ```
//!
//! `source_stopped` is false for phases `prepare`, `disk` and `memory`:
//! the source VM was never paused, it is untouched and still running, and
//! the destination only has to clean up. It is true from `switchover` on:
//! the source VM has been paused (QEMU may resume it if the switchover
//! itself failed and the destination never ran, so the caller must query
//! it); in `network` the VM runs at the destination and the source is
//! stopped for good: a failure there is about the network identity only.
//!
//! Times (`at`) are offsets from the start of the migration, so the state
//! machine needs no clock; downtime is `running_at - switchover_at`.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// Phases, for display and for failure reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Destination being prepared.
    Prepare,
    /// Disk mirror running.
    Disk,
    /// Memory being migrated (precopy, maybe postcopy).
    Memory,
    /// Source paused, last state being sent.
    Switchover,
    /// VM runs at the destination, network identity moving.
    Network,
}

impl Phase {
    /// Display name: "prepare", "disk", "memory", "switchover", "network".
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Prepare => "prepare",
            Phase::Disk => "disk",
            Phase::Memory => "memory",
            Phase::Switchover => "switchover",
            Phase::Network => "network",
        }
    }

    /// Whether the source VM has been paused by the time of this phase.
    pub fn source_stopped(self) -> bool {
        self >= Phase::Switchover
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something that happened to the migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MigrationEvent {
    /// Destination prepared (incoming QEMU, NBD exports); mirror starts.
    DestinationReady,
    /// All disk mirrors reached `ready` (or there are no disks).
    MirrorReady,
    /// QEMU memory migration started.
    MemoryStarted,
    /// Source paused for the final copy, at this offset from the start.
    SwitchoverStarted {
        /// Offset from the start of the migration.
        at: Duration,
    },
    /// Destination VM running, at this offset from the start.
    DestinationRunning {
        /// Offset from the start of the migration.
        at: Duration,
    },
    /// Network identity moved, old address retired.
    NetworkDone,
    /// Something failed.
    Error(String),
    /// The operator cancelled.
    Cancel,
}

impl MigrationEvent {
    /// Short name for errors and logs.
    pub fn name(&self) -> &'static str {
        match self {
            MigrationEvent::DestinationReady => "destination_ready",
            MigrationEvent::MirrorReady => "mirror_ready",
            MigrationEvent::MemoryStarted => "memory_started",
            MigrationEvent::SwitchoverStarted { .. } => "switchover_started",
            MigrationEvent::DestinationRunning { .. } => "destination_running",
            MigrationEvent::NetworkDone => "network_done",
            MigrationEvent::Error(_) => "error",
            MigrationEvent::Cancel => "cancel",
        }
    }
}

/// Where a migration is, with the data of that state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum MigrationState {
    /// Preparing the destination.
    #[default]
    Preparing,
    /// Disk mirror running.
    DiskSync {
        /// Whether every mirror reached `ready`.
        mirror_ready: bool,
    },
    /// Memory migrating.
    Memory,
    /// Source paused since `at`.
    Switchover {
        /// Offset of the switchover start.
        at: Duration,
    },
    /// VM running at the destination; network identity moving.
    Network {
        /// Offset of the switchover start.
        switchover_at: Duration,
        /// Offset at which the destination ran.
        running_at: Duration,
    },
    /// Done.
    Completed {
        /// Offset of the switchover start.
        switchover_at: Duration,
        /// Offset at which the destination ran.
        running_at: Duration,
    },
    /// Failed in `phase`; see the module docs for `source_stopped`.
    Failed {
        /// What went wrong.
        reason: String,
        /// Phase in which it went wrong.
        phase: Phase,
        /// Whether the source VM had been paused (phase >= switchover).
        source_stopped: bool,
    },
    /// Cancelled by the operator in `phase`.
    Cancelled {
        /// Phase in which it was cancelled.
        phase: Phase,
        /// Whether the source VM had been paused (phase >= switchover).
        source_stopped: bool,
    },
}

/// An event that does not apply to the current state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    /// The migration already ended.
    #[error("migration already {state}: {event} not allowed")]
    Terminal {
        /// "completed", "failed" or "cancelled".
        state: &'static str,
        /// The rejected event.
        event: &'static str,
    },
    /// The event does not fit this state.
    #[error("{event} not allowed in state {state}")]
    Invalid {
        /// Current state name.
        state: &'static str,
        /// The rejected event.
        event: &'static str,
    },
    /// The destination reports running before the switchover started.
    #[error("destination running at {running:?} before switchover at {switchover:?}")]
    TimeWentBackwards {
        /// Switchover offset.
        switchover: Duration,
        /// Running offset.
        running: Duration,
    },
}

impl MigrationState {
    /// State name for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            MigrationState::Preparing => "preparing",
            MigrationState::DiskSync { .. } => "disk_sync",
            MigrationState::Memory => "memory",
            MigrationState::Switchover { .. } => "switchover",
            MigrationState::Network { .. } => "network",
            MigrationState::Completed { .. } => "completed",
            MigrationState::Failed { .. } => "failed",
            MigrationState::Cancelled { .. } => "cancelled",
        }
    }

    /// Current phase; `None` once terminal.
    pub fn phase(&self) -> Option<Phase> {
        match self {
            MigrationState::Preparing => Some(Phase::Prepare),
            MigrationState::DiskSync { .. } => Some(Phase::Disk),
            MigrationState::Memory => Some(Phase::Memory),
            MigrationState::Switchover { .. } => Some(Phase::Switchover),
            MigrationState::Network { .. } => Some(Phase::Network),
            _ => None,
        }
    }

    /// Completed, failed or cancelled.
    pub fn is_terminal(&self) -> bool {
        self.phase().is_none()
    }

    /// Guest downtime, once the destination ran.
    pub fn downtime(&self) -> Option<Duration> {
        match self {
            MigrationState::Network {
                switchover_at,
                running_at,
            }
            | MigrationState::Completed {
                switchover_at,
                running_at,
            } => Some(running_at.saturating_sub(*switchover_at)),
            _ => None,
        }
    }

    /// Apply `event`, returning the next state; `self` is left unchanged.
    pub fn step(&self, event: MigrationEvent) -> Result<MigrationState, TransitionError> {
        use MigrationEvent as E;
        use MigrationState as S;
        let Some(phase) = self.phase() else {
            return Err(TransitionError::Terminal {
                state: self.name(),
                event: event.name(),
            });
        };
        let invalid = |event: &MigrationEvent| TransitionError::Invalid {
            state: self.name(),
            event: event.name(),
        };
        match (self, event) {
            (_, E::Error(reason)) => Ok(S::Failed {
                reason,
                phase,
                source_stopped: phase.source_stopped(),
            }),
            (_, E::Cancel) => Ok(S::Cancelled {
                phase,
                source_stopped: phase.source_stopped(),
            }),
            (S::Preparing, E::DestinationReady) => Ok(S::DiskSync {
                mirror_ready: false,
            }),
            (S::DiskSync { .. }, E::MirrorReady) => Ok(S::DiskSync { mirror_ready: true }),
            (S::DiskSync { mirror_ready: true }, E::MemoryStarted) => Ok(S::Memory),
            (S::Memory, E::SwitchoverStarted { at }) => Ok(S::Switchover { at }),
            (S::Switchover { at }, E::DestinationRunning { at: running }) => {
                if running < *at {
                    return Err(TransitionError::TimeWentBackwards {
                        switchover: *at,
                        running,
                    });
                }
                Ok(S::Network {
                    switchover_at: *at,
                    running_at: running,
                })
            }
            (
                S::Network {
                    switchover_at,
                    running_at,
                },
                E::NetworkDone,
            ) => Ok(S::Completed {
                switchover_at: *switchover_at,
                running_at: *running_at,
            }),
            (_, ev) => Err(invalid(&ev)),
        }
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
