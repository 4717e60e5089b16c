//! `edgemig-qmp`: a small async client for the QEMU Machine Protocol.
//!
//! Hand-written over `serde_json` (see `docs/qmp.md` for why). One
//! connection is shared by any number of tasks: [`Qmp`] is a cheap
//! `Clone` handle, each command carries its own id and waits on its own
//! reply, and a background reader task routes replies to callers and
//! events to every [`EventStream`].
//!
//! The client is deliberately lenient with what QEMU sends: unknown events,
//! unknown fields, unknown enum values ([`MigrationStatus::Other`] and
//! friends) and unparsable lines are logged and skipped, never fatal.
//!
//! ```no_run
//! # async fn demo() -> Result<(), edgemig_qmp::QmpError> {
//! use edgemig_qmp::{KnownEvent, Qmp};
//! use std::time::Duration;
//!
//! let (qmp, mut events) = Qmp::connect("/run/vm0/qmp.sock").await?;
//! qmp.cont().await?;
//! events
//!     .wait_for(|e| matches!(e.known(), KnownEvent::Resume), Duration::from_secs(5))
//!     .await?;
//! # Ok(()) }
//! ```

mod address;
mod client;
mod commands;
mod error;
mod events;
mod open_enum;
mod types;
mod wire;

#[cfg(test)]
mod fake_tests;

pub use address::{
    InetSocketAddress, MigrationAddress, MigrationChannel, SocketAddress, UnixSocketAddress,
};
pub use client::{Qmp, QmpConfig};
pub use commands::{MirrorArgs, NbdExportArgs, NbdServerArgs};
pub use error::{QmpError, Result};
pub use events::{BlockJobEvent, Event, EventStream, KnownEvent, Timestamp};
pub use types::{
    BlockJobInfo, JobStatus, JobType, MigrationCapability, MigrationInfo, MigrationStatus,
    MirrorCopyMode, MirrorSyncMode, RamStats, RunState, ShutdownCause, StatusInfo, VersionInfo,
};
pub use wire::{Greeting, QemuVersion};
