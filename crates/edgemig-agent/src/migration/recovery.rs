//! Recovery after an agent restart: every migration in the store is looked
//! at with what its VM's QEMU actually says, and the table of
//! `edgemig_migration::recovery` decides: roll back, ask the destination,
//! finish the removal, keep the tunnel, abort, resume or carry on with the
//! handoff. An outcome this site cannot know is asked for, never guessed.

use edgemig_api::VmState;
use edgemig_migration::{
    DestinationPhase, DestinationRecovery, MigrationReport, Outcome, PhaseTimes, QemuFound,
    QemuMigration, ReportStatus, SourceEvent, SourcePhase, SourceRecovery, recover_destination,
    recover_source,
};
use edgemig_qmp::MigrationStatus;
use std::collections::HashMap;
use std::sync::Arc;

use super::id::MigrationId;
use super::jobs::{JobRecord, JobSide, SourceJob};
use super::qmp_steps;
use super::steps::prepare;
use super::steps::switchover::{self, Settled};
use crate::manager::{Live, Manager, ManagerError, unix_ms};

/// What QEMU of `live` says now.
pub(crate) async fn qemu_found(live: Option<&Live>) -> QemuFound {
    let Some(live) = live.filter(|l| !l.qmp.is_closed()) else {
        return QemuFound::Gone;
    };
    let Ok(status) = live.qmp.query_status().await else {
        return QemuFound::Gone;
    };
    if status.running {
        return QemuFound::Running;
    }
    let migration = match live.qmp.query_migrate().await.ok().and_then(|i| i.status) {
        Some(MigrationStatus::Completed) => QemuMigration::Completed,
        Some(MigrationStatus::PostcopyActive) => QemuMigration::Postcopy,
        Some(MigrationStatus::Failed | MigrationStatus::Cancelled) => QemuMigration::Failed,
        _ => QemuMigration::InProgress,
    };
    QemuFound::Paused(migration)
}

/// The latest migration of each VM among `jobs` (by their start, both
/// sides stamped with this site's clock; ties go to the larger id).
fn latest_per_vm(jobs: &[JobRecord]) -> HashMap<String, MigrationId> {
    let mut latest: HashMap<&str, &JobRecord> = HashMap::new();
    for job in jobs {
        let newer = latest.get(job.vm.as_str()).is_none_or(|seen| {
            (job.started_at_ms, job.id.as_str()) > (seen.started_at_ms, seen.id.as_str())
        });
        if newer {
            latest.insert(job.vm.as_str(), job);
        }
    }
    latest
        .into_iter()
        .map(|(vm, job)| (vm.to_string(), job.id.clone()))
        .collect()
}

impl Manager {
    /// Recovers every migration the store holds (at start-up, after the
    /// VMs were re-attached).
    pub(crate) async fn recover_migrations(self: &Arc<Self>) -> Result<(), ManagerError> {
        let now = unix_ms();
        let jobs = self.store.jobs().map_err(ManagerError::Store)?;
        let latest = latest_per_vm(&jobs);
        for job in jobs {
            if job.expired(now) {
                let _ = self.store.remove_job(job.id.as_str());
                continue;
            }
            // An older record of a VM that migrated again since is history
            // (kept to answer repeated questions): the VM here now, and any
            // tunnel it needs, belong to its latest migration.
            if latest.get(job.vm.as_str()) != Some(&job.id) {
                tracing::debug!(id = %job.id, vm = %job.vm, "migration superseded by a later one of the VM: nothing to recover");
                continue;
            }
            let live = self.live.lock().await.get(&job.vm).cloned();
            let found = qemu_found(live.as_ref()).await;
            match &job.side {
                JobSide::Source(source) => {
                    let action = recover_source(&source.phase, found);
                    tracing::info!(id = %job.id, vm = %job.vm, phase = source.phase.name(), ?found, ?action, "recovering a migration (source)");
                    self.recover_source_job(job.clone(), source.clone(), action, live)
                        .await;
                }
                JobSide::Destination(dest) => {
                    let action = recover_destination(&dest.phase, found);
                    tracing::info!(id = %job.id, vm = %job.vm, phase = dest.phase.name(), ?found, ?action, "recovering a migration (destination)");
                    self.recover_destination_job(&job, action, live).await?;
                }
            }
        }
        Ok(())
    }

    async fn recover_destination_job(
        self: &Arc<Self>,
        job: &JobRecord,
        action: DestinationRecovery,
        live: Option<Live>,
    ) -> Result<(), ManagerError> {
        let id = &job.id;
        match (action, live) {
            (DestinationRecovery::Reattach, Some(live)) => {
                self.watch_incoming(id.clone(), job.vm.clone(), live.pid);
            }
            (DestinationRecovery::Resume, Some(live)) => {
                self.resume_committed(id, &job.vm, &live).await?;
            }
            (DestinationRecovery::ContinueHandoff, Some(live)) => {
                if let Ok(mut record) = self.record(&job.vm)
                    && record.state != VmState::Running
                {
                    record.state = VmState::Running;
                    self.store.put(&record).map_err(ManagerError::Store)?;
                    self.supervise(job.vm.clone(), live.pid);
                }
                let handoff_over = job
                    .destination()
                    .and_then(|d| d.handoff.as_ref())
                    .is_some_and(|h| !matches!(h.state.as_str(), "pending" | "announced"));
                if !handoff_over {
                    self.start_handoff(id.clone(), &job.vm, &live);
                }
            }
            (DestinationRecovery::Crashed, _) => {
                let resumed = job
                    .destination()
                    .and_then(|d| d.phase.resumed_at_unix_us())
                    .unwrap_or(0);
                self.end_destination(
                    id,
                    DestinationPhase::Done {
                        resumed_at_unix_us: resumed,
                    },
                )?;
            }
            (DestinationRecovery::Nothing, _) => {}
            // Abort, and any action whose QEMU vanished meanwhile.
            _ => {
                let _op = self.ops.lock().await;
                self.abort_destination(id, &job.vm).await?;
            }
        }
        Ok(())
    }

    async fn recover_source_job(
        self: &Arc<Self>,
        job: JobRecord,
        source: SourceJob,
        action: SourceRecovery,
        live: Option<Live>,
    ) {
        if let Some(t) = &source.tunnel
            && (source.phase.destination_runs() || action == SourceRecovery::KeepTunnel)
            && let Err(error) = self.open_source_tunnel(t.vni, t.remote).await
        {
            tracing::error!(id = %job.id, %error, "cannot restore the tunnel");
        }
        match action {
            SourceRecovery::KeepTunnel => {}
            SourceRecovery::Nothing => {
                if source.tunnel.is_none() {
                    let _ = self.store.remove_job(job.id.as_str());
                }
            }
            SourceRecovery::FinishRemoval => {
                self.remove_migrated(&job.vm).await;
                let _ = self.advance_source(&job, SourceEvent::SourceRemoved);
            }
            SourceRecovery::RollBack | SourceRecovery::Crashed => {
                let manager = self.clone();
                tokio::spawn(async move {
                    manager.roll_back_recovered(job, source, live).await;
                });
            }
            SourceRecovery::AskDestination => {
                let manager = self.clone();
                tokio::spawn(async move {
                    manager.settle_recovered(job, source, live).await;
                });
            }
        }
    }

    /// Applies `event` to a recovered source record and persists it.
    fn advance_source(
        &self,
        job: &JobRecord,
        event: SourceEvent,
    ) -> Result<SourcePhase, ManagerError> {
        let current = self
            .store
            .job(job.id.as_str())
            .map_err(ManagerError::Store)?
            .unwrap_or_else(|| job.clone());
        let mut record = current.clone();
        let JobSide::Source(source) = &mut record.side else {
            return Err(ManagerError::Invalid("not a source record".into()));
        };
        source.phase = source
            .phase
            .step(event)
            .map_err(|e| ManagerError::Conflict(e.to_string()))?;
        let phase = source.phase.clone();
        self.store.put_job(&record).map_err(ManagerError::Store)?;
        Ok(phase)
    }

    /// The commit was never asked: stop QEMU's migration and the mirrors,
    /// resume the VM, tell the destination to abort.
    async fn roll_back_recovered(
        self: Arc<Self>,
        job: JobRecord,
        source: SourceJob,
        live: Option<Live>,
    ) {
        if let Some(live) = &live {
            let _ = live.qmp.migrate_cancel().await;
            if let Ok(record) = self.record(&job.vm) {
                for disk in record.disks() {
                    let _ = qmp_steps::cancel_mirror(&live.qmp, disk.role.node()).await;
                }
            }
            let _ = live.qmp.object_del(qmp_steps::TLS_OBJECT).await;
            switchover::resume_source(&self, &job.vm, &live.qmp).await;
        }
        if let Some(t) = &source.tunnel {
            let _ = self.close_source_tunnel(t.vni).await;
        }
        self.ask_abort(&job, &source.to).await;
        let reason = if live.is_some() {
            "the source agent restarted before the switchover"
        } else {
            "the VM's QEMU ended while its agent was down"
        };
        let phase = self.advance_source(&job, SourceEvent::Fail(reason.into()));
        self.finish_recovered(&job, &source, phase.ok());
    }

    /// The commit may be out: ask the destination (again) and settle by its
    /// answer, the VM paused here meanwhile.
    async fn settle_recovered(
        self: Arc<Self>,
        job: JobRecord,
        source: SourceJob,
        live: Option<Live>,
    ) {
        let Ok(peer) = self.peer_client_for(&source.to) else {
            tracing::error!(id = %job.id, to = %source.to, "cannot reach the destination: not a peer any more");
            return;
        };
        if let Ok(mut record) = self.record(&job.vm)
            && record.state == VmState::Running
        {
            record.state = VmState::Paused;
            let _ = self.store.put(&record);
        }
        let Some(switches) = self.migrations.begin(job.id.as_str(), &job.vm, &source.to) else {
            return;
        };
        let phase_name = source.phase.name().to_string();
        self.migrations.phase(
            &job.vm,
            &phase_name,
            Some("recovered after an agent restart".into()),
        );
        let manager = self.clone();
        let vm = job.vm.clone();
        let settled = switchover::settle(&peer, None, &job.id, switches.resolve, |note| {
            manager.migrations.phase(&vm, &phase_name, note);
        })
        .await;
        let phase = match settled {
            Settled::Committed { .. } | Settled::Resolved(Outcome::Committed) => {
                let event = match settled {
                    Settled::Resolved(o) => SourceEvent::Resolved(o),
                    _ => SourceEvent::Resolved(Outcome::Committed),
                };
                let _ = self.advance_source(&job, event);
                self.remove_migrated(&job.vm).await;
                self.advance_source(&job, SourceEvent::SourceRemoved)
            }
            Settled::Aborted | Settled::Resolved(Outcome::Aborted) => {
                if let Some(live) = &live {
                    switchover::resume_source(&self, &job.vm, &live.qmp).await;
                } else if let Ok(mut record) = self.record(&job.vm) {
                    record.state = VmState::Crashed;
                    let _ = self.store.put(&record);
                }
                if let Some(t) = &source.tunnel {
                    let _ = self.close_source_tunnel(t.vni).await;
                    let _ = self.clear_tunnel(&job);
                }
                let event = match settled {
                    Settled::Aborted => SourceEvent::DestinationAborted,
                    _ => SourceEvent::Resolved(Outcome::Aborted),
                };
                self.advance_source(&job, event)
            }
        };
        self.finish_recovered(&job, &source, phase.ok());
    }

    fn clear_tunnel(&self, job: &JobRecord) -> Result<(), ManagerError> {
        if let Some(mut current) = self
            .store
            .job(job.id.as_str())
            .map_err(ManagerError::Store)?
            && let JobSide::Source(s) = &mut current.side
        {
            s.tunnel = None;
            self.store.put_job(&current).map_err(ManagerError::Store)?;
        }
        Ok(())
    }

    /// Tells the destination to abort, until it answers (for a while).
    async fn ask_abort(&self, job: &JobRecord, to: &str) {
        let Ok(peer) = self.peer_client_for(to) else {
            return;
        };
        prepare::abort_at_destination(&peer, &job.id, prepare::ABORT_PERSISTENCE).await;
    }

    /// Reports a recovered migration's end and drops its record when
    /// nothing of it is left here.
    fn finish_recovered(&self, job: &JobRecord, source: &SourceJob, phase: Option<SourcePhase>) {
        let Some(phase) = phase else { return };
        let mut report = MigrationReport {
            status: ReportStatus::Failed,
            id: job.id.to_string(),
            total_ms: unix_ms().saturating_sub(job.started_at_ms),
            downtime_ms: None,
            qemu_downtime_ms: None,
            fixed_ms: None,
            phases: PhaseTimes::default(),
            blackout: Default::default(),
            disk_bytes: 0,
            disks: Vec::new(),
            memory_bytes: 0,
            paths: Vec::new(),
            transport: source.options.transport,
            compression: "unknown".into(),
            error: None,
            insecure: source.options.insecure,
            vm: job.vm.clone(),
            from: self.config.site.clone(),
            to: source.to.clone(),
            started_at: job.started_at_ms,
            network: None,
        };
        report.apply_phase(&phase);
        let tunnel_open = self
            .store
            .job(job.id.as_str())
            .ok()
            .flatten()
            .and_then(|j| j.source().map(|s| s.tunnel.is_some()))
            .unwrap_or(false);
        if phase.is_terminal() && !tunnel_open {
            let _ = self.store.remove_job(job.id.as_str());
        }
        self.sync_leases();
        self.migrations.finish(&job.vm, report);
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::migration::jobs::DestinationJob;

    fn incoming(vm: &str, started_at_ms: u64, phase: DestinationPhase) -> JobRecord {
        JobRecord {
            id: MigrationId::random(),
            vm: vm.into(),
            started_at_ms,
            side: JobSide::Destination(DestinationJob {
                from: "site-a".into(),
                phase,
                tunnel_remote: Ipv4Addr::new(172, 31, 0, 1),
                skip_handoff: None,
                handoff: None,
                ended_at_ms: None,
            }),
        }
    }

    #[test]
    fn only_each_vms_latest_migration_is_recovered() {
        // An attempt that was aborted here, then the migration that brought
        // the VM: the old abort must not touch the VM that runs now.
        let aborted = incoming("web", 100, DestinationPhase::Aborted);
        let arrived = incoming(
            "web",
            200,
            DestinationPhase::Done {
                resumed_at_unix_us: 1,
            },
        );
        let other = incoming("db", 50, DestinationPhase::Aborted);
        let jobs = vec![arrived.clone(), aborted.clone(), other.clone()];
        let latest = latest_per_vm(&jobs);
        assert_eq!(latest.len(), 2);
        assert_eq!(latest["web"], arrived.id);
        assert_eq!(latest["db"], other.id);
    }
}
