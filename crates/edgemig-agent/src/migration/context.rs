//! What every source-side step of a migration works with: the migration's
//! identity and options, the VM's QEMU and guest channel, the client of the
//! destination's agent, progress reporting, and the persisted phase.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::http::Method;
use edgemig_migration::{
    MigrateOptions, MigrationPlan, PathBytes, PathThroughput, Phase, ProgressEvent, SourceEvent,
    SourcePhase,
};
use edgemig_pki::PeerClient;
use tokio::sync::watch;

use super::id::MigrationId;
use super::jobs::{JobRecord, JobSide, SourceJob};
use super::path_meter::PathMeter;
use crate::manager::{Live, Manager, ManagerError};
use crate::vm::VmRecord;

/// Limit of one ordinary peer request.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a migration could not go on.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Cancelled by the operator.
    #[error("Cancelled")]
    Cancelled,
    /// The destination agent failed or refused.
    #[error("Destination site {site} failed")]
    Peer {
        /// Site.
        site: String,
        /// Why.
        #[source]
        source: edgemig_pki::PeerError,
    },
    /// QEMU failed.
    #[error("QEMU failed during the {phase} phase")]
    Qmp {
        /// Phase.
        phase: Phase,
        /// Why.
        #[source]
        source: edgemig_qmp::QmpError,
    },
    /// QEMU reported the migration failed.
    #[error("Migration failed in QEMU: {0}")]
    Migration(String),
    /// A disk mirror failed.
    #[error("Disk hand-over failed: {0}")]
    Disk(String),
    /// The destination aborted after the commit was asked: the VM runs
    /// here as before.
    #[error("The destination aborted the migration")]
    DestinationAborted,
    /// The operator settled an unknown outcome as aborted.
    #[error("Settled as aborted by the operator")]
    ResolvedAborted,
    /// A transition the state machine refuses (a bug, or a fenced action).
    #[error(transparent)]
    Transition(#[from] edgemig_migration::TransitionError),
    /// Local work failed.
    #[error(transparent)]
    Manager(#[from] ManagerError),
}

/// Maps a QMP error of `phase`.
pub fn qmp_err(phase: Phase) -> impl FnOnce(edgemig_qmp::QmpError) -> SourceError {
    move |source| SourceError::Qmp { phase, source }
}

/// One migration driven from here.
pub struct SourceCtx {
    /// The site's manager.
    pub manager: Arc<Manager>,
    /// The source side of the migration's persisted record.
    pub job: std::sync::Mutex<SourceJob>,
    /// When it started, Unix ms (in the persisted record).
    pub started_at_ms: u64,
    /// Its id.
    pub id: MigrationId,
    /// The VM.
    pub vm: String,
    /// Destination site.
    pub to: String,
    /// The destination agent's address.
    pub peer_addr: std::net::SocketAddr,
    /// The destination's agent.
    pub peer: PeerClient,
    /// What the operator asked for.
    pub options: MigrateOptions,
    /// How QEMU migrates.
    pub plan: MigrationPlan,
    /// When it was asked for.
    pub started: Instant,
    /// The same instant on the wall clock (QMP event times are wall-clock).
    pub started_wall: SystemTime,
    /// Set by `migrate cancel`.
    pub cancel: watch::Receiver<bool>,
    /// Bytes per path.
    pub meter: Option<PathMeter>,
    /// Last per-path sample, for progress events.
    pub last_paths: std::sync::Mutex<Option<(Instant, Vec<PathBytes>)>>,
    /// The VM's record when the migration began.
    pub record: VmRecord,
    /// The VM's QEMU and guest channel.
    pub live: Live,
}

impl SourceCtx {
    /// The current phase.
    pub fn phase(&self) -> SourcePhase {
        self.source_job().phase
    }

    /// The source side of the record.
    pub fn source_job(&self) -> SourceJob {
        self.lock_job().clone()
    }

    fn lock_job(&self) -> std::sync::MutexGuard<'_, SourceJob> {
        self.job
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The whole record as persisted.
    pub fn record_of_job(&self) -> JobRecord {
        JobRecord {
            id: self.id.clone(),
            vm: self.vm.clone(),
            started_at_ms: self.started_at_ms,
            side: JobSide::Source(self.source_job()),
        }
    }

    /// Changes the source side of the record and persists it.
    pub fn update(&self, f: impl FnOnce(&mut SourceJob)) -> Result<(), SourceError> {
        f(&mut self.lock_job());
        self.manager
            .store
            .put_job(&self.record_of_job())
            .map_err(|e| SourceError::Manager(ManagerError::Store(e)))
    }

    /// Applies `event` to the phase and persists the new phase before
    /// anything acts on it.
    pub fn advance(&self, event: SourceEvent) -> Result<SourcePhase, SourceError> {
        let next = self.phase().step(event)?;
        let phase = next.clone();
        self.update(|s| s.phase = phase)?;
        tracing::info!(id = %self.id, vm = %self.vm, phase = next.name(), "migration phase");
        Ok(next)
    }

    /// Offset of wall-clock time `at` from the migration's start.
    pub fn offset_of(&self, at: SystemTime) -> Duration {
        at.duration_since(self.started_wall).unwrap_or_default()
    }

    /// Fails with `Cancelled` once the operator cancelled.
    pub fn check_cancel(&self) -> Result<(), SourceError> {
        if *self.cancel.borrow() {
            Err(SourceError::Cancelled)
        } else {
            Ok(())
        }
    }

    /// Calls the destination's agent about this migration.
    pub async fn peer_call<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        timeout: Duration,
    ) -> Result<T, SourceError> {
        self.peer
            .request_json(method, path, body, timeout)
            .await
            .map_err(|source| SourceError::Peer {
                site: self.to.clone(),
                source,
            })
    }

    /// The peer route of this migration, `/v1/peer/migrations/{id}{rest}`.
    pub fn route(&self, rest: &str) -> String {
        format!("/v1/peer/migrations/{}{rest}", self.id)
    }

    /// Records a progress tick.
    pub fn progress(&self, phase: Phase, done: u64, left: u64, bps: u64, dirty_bps: u64) {
        let eta_ms = edgemig_migration::report::eta_ms(left, bps, dirty_bps);
        self.manager.migrations.progress(
            &self.vm,
            ProgressEvent {
                phase,
                bytes_done: done,
                bytes_left: left,
                throughput_bps: bps,
                paths: self.path_throughput(),
                dirty_rate_bps: dirty_bps,
                eta_ms,
            },
        );
    }

    /// Throughput per path since the previous progress event.
    fn path_throughput(&self) -> Vec<PathThroughput> {
        let Some(meter) = &self.meter else {
            return Vec::new();
        };
        let now = (Instant::now(), meter.paths());
        let mut last = self
            .last_paths
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let out = match last.as_ref() {
            Some((at, before)) => {
                let secs = now.0.duration_since(*at).as_secs_f64().max(1e-3);
                now.1
                    .iter()
                    .map(|p| {
                        let prev = before
                            .iter()
                            .find(|b| b.name == p.name)
                            .map_or(0, |b| b.bytes);
                        PathThroughput {
                            name: p.name.clone(),
                            throughput_bps: (p.bytes.saturating_sub(prev) as f64 * 8.0 / secs)
                                as u64,
                        }
                    })
                    .collect()
            }
            None => Vec::new(),
        };
        *last = Some(now);
        out
    }
}
