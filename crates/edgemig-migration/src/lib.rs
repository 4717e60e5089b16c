//! `edgemig-migration`: how a VM migration should be done, without doing it.
//!
//! QEMU copies memory and disks; this crate decides *how*, and it does so
//! without any I/O (no tokio, no QMP, no clock) so every decision is
//! deterministic and unit-tested:
//!
//! - [`options`]: what the user asked for ([`MigrateOptions`]), with CLI
//!   string parsing.
//! - [`compression`]: the explicit CPU-vs-network model that picks the
//!   zstd level for `--compression auto`.
//! - [`plan`]: [`plan_migration`] turns options and measured host facts
//!   into QEMU capabilities and `migrate-set-parameters` arguments.
//! - [`pause_budget`]: how much of the user's `max_downtime` QEMU's
//!   `downtime-limit` may take, given the paths' round trip.
//! - [`convergence`]: a small state machine fed with periodic
//!   `query-migrate` samples that decides when to enable auto-converge and
//!   when to start postcopy.
//! - [`job`]: the source side of a migration as a state machine (prepare,
//!   disk, memory, switchover, commit, network) with checked transitions
//!   and the fence around the commit.
//! - [`fence`]: the destination side, and how it answers commit and
//!   abort requests so that the VM never runs at two sites.
//! - [`recovery`]: what a restarted agent does with each migration it
//!   finds, from the persisted phase and QEMU's actual state.
//! - [`report`]: the `edgemig migrate --json` report and progress lines.
//!
//! Units: every `*_bps` value in this crate is **bits** per second, as in
//! QEMU's `mbps`. QEMU's own `max-bandwidth` parameter is in **bytes** per
//! second; the conversion happens only when the parameter object is built.
//!
//! The policy is described in `docs/migration-policy.md`.

pub mod compression;
pub mod convergence;
pub mod fence;
pub mod job;
pub mod options;
pub mod pause_budget;
pub mod plan;
pub mod recovery;
pub mod report;

pub use compression::{CompressionInputs, choose_compression};
pub use convergence::{
    ConvergenceAction, ConvergenceConfig, ConvergenceDecision, ConvergenceMonitor, MigrationSample,
};
pub use fence::{AbortAnswer, CommitAnswer, DestinationPhase, IncomingMemory};
pub use job::{Outcome, Phase, RollbackCause, SourceEvent, SourcePhase, TransitionError};
pub use options::{Compression, MigrateOptions, OptionsError, PostcopyPolicy, Transport};
pub use plan::{HostEnv, MigrationPlan, PlannedCompression, plan_migration};
pub use recovery::{
    DestinationRecovery, QemuFound, QemuMigration, SourceRecovery, recover_destination,
    recover_source,
};
pub use report::{
    Blackout, DiskTransfer, MigrationReport, NetworkReport, PathBytes, PathThroughput, PhaseTimes,
    ProgressEvent, ReportError, ReportStatus,
};
