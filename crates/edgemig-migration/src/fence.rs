//! The destination side of a migration and the fence that keeps a VM from
//! running at two sites: the destination runs the VM only when the source
//! asks it to commit, decides durably (the phase is persisted) before it
//! resumes the VM, and once it has agreed to abort it refuses any later
//! commit. Both answers are idempotent, so a source that lost a reply can
//! ask again and learns the same outcome.
//!
//! ```text
//! Preparing --Prepared--> Prepared --commit(memory complete)--> Committed
//! Committed --Resumed{at}--> Running --HandoffDone--> Done
//! Preparing|Prepared|Aborted --abort--> Aborted   (commit refused from now on)
//! Committed|Running|Done --abort--> refused       (the VM runs here)
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where the destination side of a migration is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum DestinationPhase {
    /// Checking room, starting QEMU, exporting disks.
    #[default]
    Preparing,
    /// Ready for the memory stream and the disk mirrors; waiting for the
    /// source's commit.
    Prepared,
    /// Decided to run the VM here (persisted before QEMU resumes it).
    Committed,
    /// The VM runs here.
    Running {
        /// When QEMU resumed the VM (its `RESUME` event), Unix µs.
        resumed_at_unix_us: u64,
    },
    /// The handoff ended; nothing of the migration is left to do here.
    Done {
        /// When QEMU resumed the VM, Unix µs.
        resumed_at_unix_us: u64,
    },
    /// Decided never to run the VM here; QEMU and files are removed.
    Aborted,
}

/// What QEMU at the destination says of the incoming memory stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncomingMemory {
    /// Still arriving (or not started).
    Arriving,
    /// All of it arrived (`completed`), or postcopy runs (`postcopy-active`:
    /// the VM may run while the rest arrives on demand).
    Complete,
    /// The incoming migration failed: this QEMU cannot run the VM.
    Failed,
}

/// The answer to a commit request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommitAnswer {
    /// Commit now: persist `Committed`, then resume the VM.
    Commit,
    /// Committed already (a repeated request): say so again.
    AlreadyCommitted,
    /// Not yet: the memory is still arriving; ask again.
    NotYet,
    /// Never: this site aborted (or does so now because its QEMU failed).
    Refused,
}

/// The answer to an abort request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AbortAnswer {
    /// Abort now: persist `Aborted`, then remove QEMU and files.
    Abort,
    /// Aborted already: say so again.
    AlreadyAborted,
    /// Refused: the VM runs here.
    Refused,
}

impl DestinationPhase {
    /// Name for logs and status answers.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Preparing => "preparing",
            Self::Prepared => "prepared",
            Self::Committed => "committed",
            Self::Running { .. } => "running",
            Self::Done { .. } => "done",
            Self::Aborted => "aborted",
        }
    }

    /// When QEMU resumed the VM, once it did.
    pub fn resumed_at_unix_us(&self) -> Option<u64> {
        match self {
            Self::Running { resumed_at_unix_us } | Self::Done { resumed_at_unix_us } => {
                Some(*resumed_at_unix_us)
            }
            _ => None,
        }
    }

    /// Whether this site decided to run the VM.
    pub fn committed(&self) -> bool {
        matches!(
            self,
            Self::Committed | Self::Running { .. } | Self::Done { .. }
        )
    }

    /// How to answer a commit request, given what QEMU says of the memory.
    pub fn on_commit(&self, memory: IncomingMemory) -> CommitAnswer {
        match self {
            Self::Committed | Self::Running { .. } | Self::Done { .. } => {
                CommitAnswer::AlreadyCommitted
            }
            Self::Aborted => CommitAnswer::Refused,
            Self::Preparing => CommitAnswer::NotYet,
            Self::Prepared => match memory {
                IncomingMemory::Complete => CommitAnswer::Commit,
                IncomingMemory::Arriving => CommitAnswer::NotYet,
                IncomingMemory::Failed => CommitAnswer::Refused,
            },
        }
    }

    /// How to answer an abort request.
    pub fn on_abort(&self) -> AbortAnswer {
        match self {
            Self::Preparing | Self::Prepared => AbortAnswer::Abort,
            Self::Aborted => AbortAnswer::AlreadyAborted,
            Self::Committed | Self::Running { .. } | Self::Done { .. } => AbortAnswer::Refused,
        }
    }
}

/// How long a destination waits for a memory stream that never started
/// before it aborts on its own (its source gave up without a word). An
/// abort is always safe for the destination to decide alone: the source
/// learns it when it asks, and resumes its VM.
pub const ABANDONED_AFTER: Duration = Duration::from_secs(3600);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_only_after_the_memory_arrived_and_never_after_an_abort() {
        let p = DestinationPhase::Prepared;
        assert_eq!(p.on_commit(IncomingMemory::Arriving), CommitAnswer::NotYet);
        assert_eq!(p.on_commit(IncomingMemory::Complete), CommitAnswer::Commit);
        assert_eq!(p.on_commit(IncomingMemory::Failed), CommitAnswer::Refused);
        assert_eq!(
            DestinationPhase::Preparing.on_commit(IncomingMemory::Complete),
            CommitAnswer::NotYet
        );
        assert_eq!(
            DestinationPhase::Aborted.on_commit(IncomingMemory::Complete),
            CommitAnswer::Refused
        );
        for committed in [
            DestinationPhase::Committed,
            DestinationPhase::Running {
                resumed_at_unix_us: 5,
            },
            DestinationPhase::Done {
                resumed_at_unix_us: 5,
            },
        ] {
            assert!(committed.committed());
            assert_eq!(
                committed.on_commit(IncomingMemory::Failed),
                CommitAnswer::AlreadyCommitted,
                "a repeated commit gets the same answer"
            );
            assert_eq!(committed.on_abort(), AbortAnswer::Refused);
        }
    }

    #[test]
    fn aborts_are_idempotent_and_allowed_until_the_commit() {
        assert_eq!(DestinationPhase::Preparing.on_abort(), AbortAnswer::Abort);
        assert_eq!(DestinationPhase::Prepared.on_abort(), AbortAnswer::Abort);
        assert_eq!(
            DestinationPhase::Aborted.on_abort(),
            AbortAnswer::AlreadyAborted
        );
    }

    #[test]
    fn phases_persist_as_tagged_json() {
        let p = DestinationPhase::Running {
            resumed_at_unix_us: 1_700_000_000_000,
        };
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["phase"], "running");
        assert_eq!(serde_json::from_value::<DestinationPhase>(v).unwrap(), p);
    }
}
