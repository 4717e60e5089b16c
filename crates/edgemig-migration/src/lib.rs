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
//! - [`convergence`]: a small state machine fed with periodic
//!   `query-migrate` samples that decides when to enable auto-converge and
//!   when to start postcopy.
//! - [`state`]: the migration lifecycle (prepare, disk, memory,
//!   switchover, network) with checked transitions.
//! - [`report`]: the `edgemig migrate --json` report and progress lines.
//!
//! Units: every `*_bps` value in this crate is **bits** per second, as in
//! QEMU's `mbps`. QEMU's own `max-bandwidth` parameter is in **bytes** per
//! second; the conversion happens only when the parameter object is built.
//!
//! The policy is described in `docs/migration-policy.md`.

pub mod compression;
pub mod convergence;
pub mod options;
pub mod plan;
pub mod report;
pub mod state;

pub use compression::{CompressionInputs, choose_compression};
pub use convergence::{
    ConvergenceAction, ConvergenceConfig, ConvergenceDecision, ConvergenceMonitor, MigrationSample,
};
pub use options::{Compression, MigrateOptions, OptionsError, PostcopyPolicy, Transport};
pub use plan::{HostEnv, MigrationPlan, PlannedCompression, plan_migration};
pub use report::{
    MigrationReport, NetworkReport, PathBytes, PathThroughput, ProgressEvent, ReportError,
    ReportStatus,
};
pub use state::{MigrationEvent, MigrationState, Phase, TransitionError};
