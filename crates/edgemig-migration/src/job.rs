//! The source side of a migration as a state machine: phases with their
//! data and one checked [`SourcePhase::step`]. The agent persists the phase
//! before acting on it, so a restarted agent knows what may have happened
//! (see [`crate::recovery`]).
//!
//! ```text
//! Preparing --DestinationReady--> Disk --DisksReady--> Memory
//! Memory --SourcePaused{at}--> Switchover{paused_at}
//! Switchover --CommitSent--> AwaitingCommit{paused_at}
//! AwaitingCommit --DestinationCommitted{resumed_at}--> Committed
//! AwaitingCommit --DestinationAborted--> RolledBack
//! Committed --SourceRemoved--> Network --NetworkDone--> Completed
//! Preparing|Disk|Memory|Switchover --Fail/Cancel--> RolledBack
//! ```
//!
//! The fence: before `CommitSent` the destination cannot run the VM (it
//! runs it only when asked to commit), so any failure rolls back and the
//! source VM runs on. From `CommitSent` until the destination answers, the
//! outcome is unknown: `Fail` and `Cancel` are refused, the source VM stays
//! paused, and only the destination's answer (or an operator's
//! [`SourceEvent::Resolved`]) moves the migration on. From `Committed` on the
//! VM runs at the destination and the source copy goes.
//!
//! Times are offsets from the start of the migration, so the machine needs
//! no clock; the VM's downtime is `resumed_at - paused_at`.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Phases, for progress lines and failure reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Destination being prepared.
    Prepare,
    /// Disk mirrors running.
    Disk,
    /// Memory being migrated (precopy).
    Memory,
    /// Source paused: disks handed over, last state sent, commit asked.
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
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an unknown outcome was settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The VM runs at the destination.
    Committed,
    /// The VM never ran at the destination and never will.
    Aborted,
}

/// Why a migration rolled back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RollbackCause {
    /// Something failed.
    Failed {
        /// What.
        reason: String,
    },
    /// The operator cancelled.
    Cancelled,
    /// The destination refused the commit (it had aborted).
    DestinationAborted,
    /// The operator settled an unknown outcome as aborted.
    Resolved,
}

/// Where the source side of a migration is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum SourcePhase {
    /// Asking the destination to prepare.
    #[default]
    Preparing,
    /// Disk mirrors running towards the destination.
    Disk,
    /// Memory streaming; the VM runs here.
    Memory,
    /// The VM is paused here (since `paused_at`); disks are being handed
    /// over and the last state sent. No commit was asked yet.
    Switchover {
        /// When the source VM paused.
        paused_at: Duration,
    },
    /// Commit asked of the destination; its answer decides. The VM stays
    /// paused here.
    AwaitingCommit {
        /// When the source VM paused.
        paused_at: Duration,
    },
    /// The destination runs the VM (since `resumed_at`); the copy here is
    /// being removed.
    Committed {
        /// When the source VM paused.
        paused_at: Duration,
        /// When the destination VM resumed.
        resumed_at: Duration,
    },
    /// The copy here is gone; the network identity moves (the tunnel to
    /// the destination stays until it closes it).
    Network {
        /// When the source VM paused.
        paused_at: Duration,
        /// When the destination VM resumed.
        resumed_at: Duration,
    },
    /// Done.
    Completed {
        /// When the source VM paused.
        paused_at: Duration,
        /// When the destination VM resumed.
        resumed_at: Duration,
    },
    /// The VM runs here, as before; the destination was told to abort.
    RolledBack {
        /// Why.
        cause: RollbackCause,
        /// The phase it rolled back from.
        from: Phase,
    },
}

/// Something that happened to the migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceEvent {
    /// The destination is prepared.
    DestinationReady,
    /// Every disk mirror is ready (or there are none).
    DisksReady,
    /// The source VM paused for the switchover.
    SourcePaused {
        /// Offset from the start.
        at: Duration,
    },
    /// The commit request is about to leave (persisted first).
    CommitSent,
    /// The destination confirmed it runs the VM.
    DestinationCommitted {
        /// When its VM resumed, offset from the start.
        resumed_at: Duration,
    },
    /// The destination confirmed it aborted and will never run the VM.
    DestinationAborted,
    /// The operator settled an unknown outcome.
    Resolved(Outcome),
    /// The source copy is gone.
    SourceRemoved,
    /// The network identity moved (or the handoff ended otherwise).
    NetworkDone,
    /// Something failed.
    Fail(String),
    /// The operator cancelled.
    Cancel,
}

impl SourceEvent {
    /// Short name for errors and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::DestinationReady => "destination_ready",
            Self::DisksReady => "disks_ready",
            Self::SourcePaused { .. } => "source_paused",
            Self::CommitSent => "commit_sent",
            Self::DestinationCommitted { .. } => "destination_committed",
            Self::DestinationAborted => "destination_aborted",
            Self::Resolved(_) => "resolved",
            Self::SourceRemoved => "source_removed",
            Self::NetworkDone => "network_done",
            Self::Fail(_) => "fail",
            Self::Cancel => "cancel",
        }
    }
}

/// An event that does not apply to the current phase.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    /// The migration already ended.
    #[error("Migration already {state}: {event} not allowed")]
    Terminal {
        /// "completed" or "rolled_back".
        state: &'static str,
        /// The rejected event.
        event: &'static str,
    },
    /// The event does not fit this phase.
    #[error("{event} not allowed in phase {state}")]
    Invalid {
        /// Current phase name.
        state: &'static str,
        /// The rejected event.
        event: &'static str,
    },
    /// The outcome is the destination's to tell: the source must not roll
    /// back on its own.
    #[error("The outcome is unknown until the destination answers: {event} refused")]
    Fenced {
        /// The rejected event.
        event: &'static str,
    },
    /// The destination resumed before the source paused.
    #[error("Destination resumed at {resumed:?}, before the source paused at {paused:?}")]
    TimeWentBackwards {
        /// Pause offset.
        paused: Duration,
        /// Resume offset.
        resumed: Duration,
    },
}

impl SourcePhase {
    /// Name for logs, errors and `migrations` listings.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Preparing => "preparing",
            Self::Disk => "disk",
            Self::Memory => "memory",
            Self::Switchover { .. } => "switchover",
            Self::AwaitingCommit { .. } => "awaiting_commit",
            Self::Committed { .. } => "committed",
            Self::Network { .. } => "network",
            Self::Completed { .. } => "completed",
            Self::RolledBack { .. } => "rolled_back",
        }
    }

    /// The phase for progress and reports; `None` once ended.
    pub fn phase(&self) -> Option<Phase> {
        match self {
            Self::Preparing => Some(Phase::Prepare),
            Self::Disk => Some(Phase::Disk),
            Self::Memory => Some(Phase::Memory),
            Self::Switchover { .. } | Self::AwaitingCommit { .. } | Self::Committed { .. } => {
                Some(Phase::Switchover)
            }
            Self::Network { .. } => Some(Phase::Network),
            Self::Completed { .. } | Self::RolledBack { .. } => None,
        }
    }

    /// Completed or rolled back.
    pub fn is_terminal(&self) -> bool {
        self.phase().is_none()
    }

    /// Whether the source VM may be paused now by this migration (it must
    /// never be recorded as running then).
    pub fn source_paused(&self) -> bool {
        matches!(
            self,
            Self::Switchover { .. } | Self::AwaitingCommit { .. } | Self::Committed { .. }
        )
    }

    /// Whether a commit may have reached the destination: from here on only
    /// the destination's answer settles the outcome.
    pub fn commit_may_be_out(&self) -> bool {
        matches!(self, Self::AwaitingCommit { .. })
    }

    /// Whether the VM runs at the destination.
    pub fn destination_runs(&self) -> bool {
        matches!(
            self,
            Self::Committed { .. } | Self::Network { .. } | Self::Completed { .. }
        )
    }

    /// The VM's downtime, once the destination resumed it.
    pub fn downtime(&self) -> Option<Duration> {
        match self {
            Self::Committed {
                paused_at,
                resumed_at,
            }
            | Self::Network {
                paused_at,
                resumed_at,
            }
            | Self::Completed {
                paused_at,
                resumed_at,
            } => Some(resumed_at.saturating_sub(*paused_at)),
            _ => None,
        }
    }

    /// Applies `event`, returning the next phase; `self` is unchanged.
    pub fn step(&self, event: SourceEvent) -> Result<SourcePhase, TransitionError> {
        use SourceEvent as E;
        use SourcePhase as S;
        let Some(phase) = self.phase() else {
            return Err(TransitionError::Terminal {
                state: self.name(),
                event: event.name(),
            });
        };
        let rolled_back = |cause| S::RolledBack { cause, from: phase };
        match (self, event) {
            // Before the commit is out, every failure rolls back.
            (S::Preparing | S::Disk | S::Memory | S::Switchover { .. }, E::Fail(reason)) => {
                Ok(rolled_back(RollbackCause::Failed { reason }))
            }
            (S::Preparing | S::Disk | S::Memory | S::Switchover { .. }, E::Cancel) => {
                Ok(rolled_back(RollbackCause::Cancelled))
            }
            (S::AwaitingCommit { .. }, ev @ (E::Fail(_) | E::Cancel)) => {
                Err(TransitionError::Fenced { event: ev.name() })
            }
            (S::Preparing, E::DestinationReady) => Ok(S::Disk),
            (S::Disk, E::DisksReady) => Ok(S::Memory),
            (S::Memory, E::SourcePaused { at }) => Ok(S::Switchover { paused_at: at }),
            (S::Switchover { paused_at }, E::CommitSent) => Ok(S::AwaitingCommit {
                paused_at: *paused_at,
            }),
            (S::AwaitingCommit { paused_at }, E::DestinationCommitted { resumed_at }) => {
                if resumed_at < *paused_at {
                    return Err(TransitionError::TimeWentBackwards {
                        paused: *paused_at,
                        resumed: resumed_at,
                    });
                }
                Ok(S::Committed {
                    paused_at: *paused_at,
                    resumed_at,
                })
            }
            (S::AwaitingCommit { paused_at }, E::Resolved(Outcome::Committed)) => {
                Ok(S::Committed {
                    paused_at: *paused_at,
                    resumed_at: *paused_at,
                })
            }
            (S::AwaitingCommit { .. }, E::DestinationAborted) => {
                Ok(rolled_back(RollbackCause::DestinationAborted))
            }
            (S::AwaitingCommit { .. }, E::Resolved(Outcome::Aborted)) => {
                Ok(rolled_back(RollbackCause::Resolved))
            }
            (
                S::Committed {
                    paused_at,
                    resumed_at,
                },
                E::SourceRemoved,
            ) => Ok(S::Network {
                paused_at: *paused_at,
                resumed_at: *resumed_at,
            }),
            (
                S::Network {
                    paused_at,
                    resumed_at,
                },
                E::NetworkDone,
            ) => Ok(S::Completed {
                paused_at: *paused_at,
                resumed_at: *resumed_at,
            }),
            (_, ev) => Err(TransitionError::Invalid {
                state: self.name(),
                event: ev.name(),
            }),
        }
    }
}

#[cfg(test)]
#[path = "job_tests.rs"]
mod tests;
