//! What a restarted agent does with each migration it finds in its store:
//! one table per side, from the persisted phase and what QEMU actually
//! says now (`query-status`, `query-migrate`). The agent never guesses an
//! outcome it cannot know: a source whose commit may be out asks the
//! destination and keeps the VM paused until it answers.

use crate::fence::DestinationPhase;
use crate::job::SourcePhase;

/// What the agent finds of a VM's QEMU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QemuFound {
    /// No process (or it does not answer QMP).
    Gone,
    /// The VM runs.
    Running,
    /// The VM is paused (or never started); the migration's state.
    Paused(QemuMigration),
}

/// QEMU's migration status, as far as recovery cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QemuMigration {
    /// None, setup, active, device, pre-switchover: not finished.
    InProgress,
    /// All state sent (source) or received (destination).
    Completed,
    /// Postcopy runs: the destination may run while pages flow.
    Postcopy,
    /// Failed or cancelled.
    Failed,
}

/// The source's action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceRecovery {
    /// The commit never left: cancel QEMU's migration and the mirrors,
    /// resume the VM, tell the destination to abort.
    RollBack,
    /// The VM's QEMU died before any commit: record it crashed and tell
    /// the destination to abort.
    Crashed,
    /// The outcome is unknown: keep the VM paused, ask the destination
    /// (commit again) until it answers, and settle by its answer.
    AskDestination,
    /// The destination runs the VM: remove the copy here, keep the tunnel.
    FinishRemoval,
    /// The copy here is gone: keep the tunnel until the destination closes
    /// it.
    KeepTunnel,
    /// Nothing is left to do.
    Nothing,
}

/// The destination's action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestinationRecovery {
    /// Still waiting for the source: reconnect to QEMU and go on.
    Reattach,
    /// Abort: persist the decision, remove QEMU and the files.
    Abort,
    /// Committed but not resumed: resume the VM, then hand off.
    Resume,
    /// Running: reconnect and carry on with the handoff.
    ContinueHandoff,
    /// Committed, but QEMU is gone: the VM crashed here.
    Crashed,
    /// Nothing is left to do.
    Nothing,
}

/// The source's action after a restart.
pub fn recover_source(phase: &SourcePhase, qemu: QemuFound) -> SourceRecovery {
    use SourcePhase as S;
    match phase {
        S::Preparing | S::Disk | S::Memory | S::Switchover { .. } => match qemu {
            QemuFound::Gone => SourceRecovery::Crashed,
            QemuFound::Running | QemuFound::Paused(_) => SourceRecovery::RollBack,
        },
        S::AwaitingCommit { .. } => SourceRecovery::AskDestination,
        S::Committed { .. } => SourceRecovery::FinishRemoval,
        S::Network { .. } => SourceRecovery::KeepTunnel,
        S::Completed { .. } | S::RolledBack { .. } => SourceRecovery::Nothing,
    }
}

/// The destination's action after a restart.
pub fn recover_destination(phase: &DestinationPhase, qemu: QemuFound) -> DestinationRecovery {
    use DestinationPhase as D;
    use DestinationRecovery as R;
    match (phase, qemu) {
        (D::Preparing, _) => R::Abort,
        (D::Prepared, QemuFound::Gone | QemuFound::Paused(QemuMigration::Failed)) => R::Abort,
        // Never resumed without a commit: a running copy here is not ours
        // to keep.
        (D::Prepared, QemuFound::Running) => R::Abort,
        (D::Prepared, QemuFound::Paused(_)) => R::Reattach,
        (D::Committed, QemuFound::Paused(_)) => R::Resume,
        (D::Committed, QemuFound::Running) => R::ContinueHandoff,
        (D::Committed | D::Running { .. }, QemuFound::Gone) => R::Crashed,
        (D::Running { .. }, _) => R::ContinueHandoff,
        (D::Done { .. }, _) => R::Nothing,
        // Agreed to abort, this site never runs the VM: one running here
        // came by another migration (or the VM lives here) and stays.
        (D::Aborted, QemuFound::Running) => R::Nothing,
        (D::Aborted, _) => R::Abort,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::job::{Phase, RollbackCause};

    const ALL_QEMU: [QemuFound; 6] = [
        QemuFound::Gone,
        QemuFound::Running,
        QemuFound::Paused(QemuMigration::InProgress),
        QemuFound::Paused(QemuMigration::Completed),
        QemuFound::Paused(QemuMigration::Postcopy),
        QemuFound::Paused(QemuMigration::Failed),
    ];

    fn paused() -> Duration {
        Duration::from_secs(3)
    }

    #[test]
    fn a_source_rolls_back_only_when_no_commit_can_be_out() {
        for phase in [
            SourcePhase::Preparing,
            SourcePhase::Disk,
            SourcePhase::Memory,
            SourcePhase::Switchover {
                paused_at: paused(),
            },
        ] {
            for q in ALL_QEMU {
                let want = if q == QemuFound::Gone {
                    SourceRecovery::Crashed
                } else {
                    SourceRecovery::RollBack
                };
                assert_eq!(recover_source(&phase, q), want, "{phase:?} {q:?}");
            }
        }
        let awaiting = SourcePhase::AwaitingCommit {
            paused_at: paused(),
        };
        for q in ALL_QEMU {
            assert_eq!(
                recover_source(&awaiting, q),
                SourceRecovery::AskDestination,
                "whatever QEMU says, the outcome is the destination's: {q:?}"
            );
        }
    }

    #[test]
    fn a_committed_source_finishes_and_an_ended_one_does_nothing() {
        let committed = SourcePhase::Committed {
            paused_at: paused(),
            resumed_at: paused(),
        };
        let network = SourcePhase::Network {
            paused_at: paused(),
            resumed_at: paused(),
        };
        let back = SourcePhase::RolledBack {
            cause: RollbackCause::Cancelled,
            from: Phase::Disk,
        };
        for q in ALL_QEMU {
            assert_eq!(recover_source(&committed, q), SourceRecovery::FinishRemoval);
            assert_eq!(recover_source(&network, q), SourceRecovery::KeepTunnel);
            assert_eq!(recover_source(&back, q), SourceRecovery::Nothing);
        }
    }

    #[test]
    fn a_destination_never_runs_an_uncommitted_vm() {
        use DestinationRecovery as R;
        let table = [
            (DestinationPhase::Preparing, QemuFound::Running, R::Abort),
            (DestinationPhase::Prepared, QemuFound::Gone, R::Abort),
            (DestinationPhase::Prepared, QemuFound::Running, R::Abort),
            (
                DestinationPhase::Prepared,
                QemuFound::Paused(QemuMigration::Failed),
                R::Abort,
            ),
            (
                DestinationPhase::Prepared,
                QemuFound::Paused(QemuMigration::InProgress),
                R::Reattach,
            ),
            (
                DestinationPhase::Prepared,
                QemuFound::Paused(QemuMigration::Completed),
                R::Reattach,
            ),
            (
                DestinationPhase::Committed,
                QemuFound::Paused(QemuMigration::Completed),
                R::Resume,
            ),
            (
                DestinationPhase::Committed,
                QemuFound::Running,
                R::ContinueHandoff,
            ),
            (DestinationPhase::Committed, QemuFound::Gone, R::Crashed),
            (
                DestinationPhase::Running {
                    resumed_at_unix_us: 1,
                },
                QemuFound::Running,
                R::ContinueHandoff,
            ),
            (
                DestinationPhase::Done {
                    resumed_at_unix_us: 1,
                },
                QemuFound::Running,
                R::Nothing,
            ),
            (DestinationPhase::Aborted, QemuFound::Running, R::Nothing),
            (DestinationPhase::Aborted, QemuFound::Gone, R::Abort),
            (
                DestinationPhase::Aborted,
                QemuFound::Paused(QemuMigration::InProgress),
                R::Abort,
            ),
        ];
        for (phase, q, want) in table {
            assert_eq!(recover_destination(&phase, q), want, "{phase:?} {q:?}");
        }
    }
}
