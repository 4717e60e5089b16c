//! The destination's record of a migration arriving here: who may act on
//! it (only the site that prepared it), its persisted phase, the abort that
//! removes everything it prepared, and the watch that aborts a migration
//! its source abandoned.

use std::sync::Arc;
use std::time::Duration;

use edgemig_api::peer::IncomingStatus;
use edgemig_migration::{DestinationPhase, fence::ABANDONED_AFTER};
use edgemig_qmp::MigrationStatus;

use super::id::MigrationId;
use super::jobs::{DestinationJob, JobRecord, JobSide};
use crate::manager::{Manager, ManagerError, unix_ms};
use crate::qemu;

/// How often an incoming migration is looked at.
const WATCH: Duration = Duration::from_secs(5);

impl Manager {
    /// The destination record of migration `id`, if `caller` (the site in
    /// the peer's certificate) is the site that prepared it.
    pub(crate) fn destination_job(
        &self,
        id: &MigrationId,
        caller: &str,
    ) -> Result<(JobRecord, DestinationJob), ManagerError> {
        let job = self
            .store
            .job(id.as_str())
            .map_err(ManagerError::Store)?
            .ok_or_else(|| ManagerError::NotFound(format!("migration {id}")))?;
        let Some(dest) = job.destination().cloned() else {
            return Err(ManagerError::NotFound(format!("migration {id}")));
        };
        if dest.from != caller {
            tracing::warn!(%id, caller, owner = %dest.from, "a peer asked about another site's migration");
            return Err(ManagerError::Forbidden(format!(
                "Migration {id} was not prepared by site {caller}"
            )));
        }
        Ok((job, dest))
    }

    /// Changes the destination side of record `id` and persists it.
    pub(crate) fn update_destination(
        &self,
        id: &MigrationId,
        f: impl FnOnce(&mut DestinationJob),
    ) -> Result<(), ManagerError> {
        let mut job = self
            .store
            .job(id.as_str())
            .map_err(ManagerError::Store)?
            .ok_or_else(|| ManagerError::NotFound(format!("migration {id}")))?;
        if let JobSide::Destination(d) = &mut job.side {
            f(d);
        }
        self.store.put_job(&job).map_err(ManagerError::Store)
    }

    /// Persists the destination phase of `id`.
    pub(crate) fn set_destination_phase(
        &self,
        id: &MigrationId,
        phase: DestinationPhase,
    ) -> Result<(), ManagerError> {
        tracing::info!(%id, phase = phase.name(), "incoming migration phase");
        self.update_destination(id, |d| d.phase = phase)
    }

    /// Persists an ending phase (done or aborted): the record stays as a
    /// tombstone for later questions.
    pub(crate) fn end_destination(
        &self,
        id: &MigrationId,
        phase: DestinationPhase,
    ) -> Result<(), ManagerError> {
        tracing::info!(%id, phase = phase.name(), "incoming migration ended");
        self.update_destination(id, |d| {
            d.phase = phase;
            d.ended_at_ms = Some(unix_ms());
        })
    }

    /// Aborts migration `id` of `vm` here: the decision is persisted first,
    /// then QEMU, tunnel, files and the VM's record go. Called with the
    /// lifecycle lock held.
    pub(crate) async fn abort_destination(
        &self,
        id: &MigrationId,
        vm: &str,
    ) -> Result<(), ManagerError> {
        self.end_destination(id, DestinationPhase::Aborted)?;
        let live = self.live.lock().await.remove(vm);
        if let Ok(record) = self.record(vm) {
            let files = self.files(vm);
            let pid = live
                .map(|l| l.pid)
                .or(record
                    .pid
                    .filter(|pid| crate::host::process_matches(*pid, &files.qmp())))
                .or_else(|| qemu::running_from_pidfile(&files));
            if let Some(pid) = pid {
                let _ = qemu::kill(pid, libc::SIGKILL);
                qemu::wait_gone(pid, Duration::from_secs(10)).await;
            }
            let (vxlan, bridge) = record.tunnel_names();
            let _ = self.netdev.delete(&vxlan).await;
            let _ = self.netdev.delete(&bridge).await;
            let _ = std::fs::remove_dir_all(&files.dir);
            self.store.remove(vm).map_err(ManagerError::Store)?;
        }
        self.sync_leases();
        tracing::info!(%id, vm, "incoming VM aborted and removed");
        Ok(())
    }

    /// Where the QEMU TLS credentials of this site are, if it has TLS files.
    pub(crate) fn qemu_tls_dir(&self) -> Option<std::path::PathBuf> {
        let dir = self.config.state_dir.join("qemu-tls");
        dir.join("ca-cert.pem").is_file().then_some(dir)
    }

    /// The destination's view of migration `id`, for its source.
    pub async fn incoming_status(
        &self,
        id: &MigrationId,
        caller: &str,
    ) -> Result<IncomingStatus, ManagerError> {
        let (job, dest) = self.destination_job(id, caller)?;
        let live = self.live.lock().await.get(&job.vm).cloned();
        let migration = match &live {
            Some(l) if !dest.phase.committed() => l
                .qmp
                .query_migrate()
                .await
                .ok()
                .and_then(|i| i.status)
                .map_or_else(|| "none".to_string(), |s| s.as_str().to_string()),
            Some(_) => "completed".into(),
            None => "none".into(),
        };
        Ok(IncomingStatus {
            id: id.to_string(),
            name: job.vm,
            phase: dest.phase.name().to_string(),
            migration,
            handoff: dest.handoff,
        })
    }

    /// Aborts an incoming migration its source gave up without a word: its
    /// QEMU failed or went away, or the stream never started within
    /// [`ABANDONED_AFTER`]. Aborting is always the destination's to decide:
    /// the source learns it when it asks, and resumes its VM.
    pub(crate) fn watch_incoming(self: &Arc<Self>, id: MigrationId, vm: String, pid: u32) {
        let manager = Arc::downgrade(self);
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            loop {
                tokio::time::sleep(WATCH).await;
                let Some(m) = manager.upgrade() else { return };
                let prepared = m
                    .store
                    .job(id.as_str())
                    .ok()
                    .flatten()
                    .and_then(|j| j.destination().map(|d| d.phase.clone()))
                    == Some(DestinationPhase::Prepared);
                if !prepared {
                    return;
                }
                let live = m.live.lock().await.get(&vm).cloned();
                let status = match &live {
                    Some(l) if l.pid == pid => {
                        l.qmp.query_migrate().await.ok().and_then(|i| i.status)
                    }
                    _ => None,
                };
                let gone = live
                    .as_ref()
                    .is_none_or(|l| l.qmp.is_closed() || l.pid != pid)
                    || !crate::host::process_alive(pid);
                let stale = gone
                    || match status {
                        Some(MigrationStatus::Failed | MigrationStatus::Cancelled) => true,
                        None | Some(MigrationStatus::None | MigrationStatus::Setup) => {
                            started.elapsed() > ABANDONED_AFTER
                        }
                        _ => false,
                    };
                if stale {
                    let _op = m.ops.lock().await;
                    // Checked again under the lock: a commit may have won.
                    let still = m
                        .store
                        .job(id.as_str())
                        .ok()
                        .flatten()
                        .and_then(|j| j.destination().map(|d| d.phase.on_abort()))
                        == Some(edgemig_migration::AbortAnswer::Abort);
                    if still {
                        tracing::warn!(%id, %vm, ?status, "incoming migration abandoned by its source; aborting");
                        let _ = m.abort_destination(&id, &vm).await;
                    }
                    return;
                }
            }
        });
    }
}
