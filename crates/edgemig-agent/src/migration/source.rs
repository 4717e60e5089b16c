//! The source side of a migration, driven as one task through its steps
//! (`steps/`: prepare, disk, memory, switchover, network), each phase
//! persisted before it acts. Any failure before the commit was asked rolls
//! back: the steps' rollbacks run in reverse and the VM runs here as
//! before. Once the commit was asked, only the destination's answer (or
//! the operator's) decides: the VM stays paused here until then.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use edgemig_api::VmState;
use edgemig_migration::{
    Blackout, MigrateOptions, MigrationPlan, MigrationReport, NetworkReport, Outcome, Phase,
    PhaseTimes, PlannedCompression, ReportStatus, SourceEvent, SourcePhase, plan_migration,
};
use edgemig_pki::PeerClient;
use tokio::sync::watch;

use super::context::{SourceCtx, SourceError};
use super::id::MigrationId;
use super::jobs::SourceJob;
use super::path_meter::PathMeter;
use super::qmp_steps;
use super::registry::Switches;
use super::steps::{disk, memory, network, prepare, switchover};
use crate::manager::{Manager, ManagerError};

/// How long the CPU is watched to tell the spare cores for compression
/// (the agent watches it all the time: `host::watch_spare_cores`).
pub(crate) const SPARE_CPU_WINDOW: Duration = Duration::from_millis(500);
/// Longest wait for a postcopy migration to deliver its last page.
const POSTCOPY_LIMIT: Duration = Duration::from_secs(3600);

/// What was set up so far, for the rollback (undone in reverse).
#[derive(Debug, Default)]
struct Done {
    dest_prepared: bool,
    /// The guest NIC a handoff plan was staged for.
    plan_staged: Option<String>,
    tunnel: bool,
    /// The VM bridge sends the VM's frames into the tunnel.
    steered: bool,
    /// Block nodes whose mirror runs.
    mirrors: Vec<&'static str>,
    memory: bool,
    /// The VM was paused for the switchover.
    paused: bool,
}

/// Numbers gathered along the way.
#[derive(Debug, Default)]
struct Tally {
    disk_bytes: u64,
    disks: Vec<edgemig_migration::DiskTransfer>,
    memory: memory::MemoryTally,
    qemu_downtime_ms: Option<u64>,
    network: Option<NetworkReport>,
    phases: PhaseTimes,
    blackout: Blackout,
    /// From the request until the source copy was removed.
    total_ms: Option<u64>,
}

/// Limit of opening the connection the commit will use.
const PEER_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn compression_name(c: &PlannedCompression) -> String {
    match c {
        PlannedCompression::None => "none".into(),
        PlannedCompression::Zstd { level } => format!("zstd:{level}"),
    }
}

/// Everything a migration starts from.
pub struct Start {
    /// The site's manager.
    pub manager: Arc<Manager>,
    /// The migration's id.
    pub id: MigrationId,
    /// The VM.
    pub vm: String,
    /// Destination site.
    pub to: String,
    /// The destination agent's address.
    pub peer_addr: SocketAddr,
    /// The destination's agent.
    pub peer: PeerClient,
    /// What the operator asked for.
    pub options: MigrateOptions,
    /// The operator's switches.
    pub switches: Switches,
    /// When it was asked for.
    pub started: Instant,
}

impl Start {
    /// Builds the context (plan from the measured spare CPU) and runs the
    /// migration to its end.
    pub async fn run(self) {
        let started_wall = SystemTime::now();
        let started_at_ms = started_wall.duration_since(UNIX_EPOCH).map_or(0, ms);
        let (record, live) = match self.manager.running_vm(&self.vm).await {
            Ok(v) => v,
            Err(e) => {
                let report = failed_report(&self, started_at_ms, &e.to_string());
                self.manager.migrations.finish(&self.vm, report);
                return;
            }
        };
        let spare = crate::host::spare_cores_now(SPARE_CPU_WINDOW).await;
        let plan = plan_for(&self.manager, &self.options, &record, spare);
        let ctx = SourceCtx {
            job: std::sync::Mutex::new(SourceJob {
                to: self.to.clone(),
                phase: SourcePhase::Preparing,
                options: self.options.clone(),
                tunnel: None,
                note: None,
            }),
            started_at_ms,
            id: self.id,
            vm: self.vm,
            to: self.to,
            peer_addr: self.peer_addr,
            peer: self.peer,
            options: self.options,
            plan,
            started: self.started,
            started_wall,
            cancel: self.switches.cancel,
            meter: Some(PathMeter::start(self.manager.path_names().await)),
            last_paths: std::sync::Mutex::new(None),
            record,
            live,
            manager: self.manager,
        };
        ctx.run(self.switches.resolve).await;
    }
}

fn plan_for(
    manager: &Manager,
    options: &MigrateOptions,
    record: &crate::vm::VmRecord,
    spare_cores: f64,
) -> MigrationPlan {
    let c = &manager.config;
    let disk_bytes: u64 = record.disks().iter().map(|d| d.mib << 20).sum();
    let env = edgemig_migration::HostEnv {
        path_bandwidth_bps: c
            .migration_path_mbit
            .iter()
            .map(|m| m * 1_000_000)
            .collect(),
        spare_cores,
        vcpus: record.vcpus,
        memory_bytes: record.memory_mib << 20,
        disk_bytes: (disk_bytes > 0).then_some(disk_bytes),
    };
    plan_migration(options, &env)
}

fn failed_report(start: &Start, started_at: u64, error: &str) -> MigrationReport {
    MigrationReport {
        status: ReportStatus::Failed,
        id: start.id.to_string(),
        total_ms: ms(start.started.elapsed()),
        downtime_ms: None,
        qemu_downtime_ms: None,
        fixed_ms: None,
        phases: PhaseTimes::default(),
        blackout: Blackout::default(),
        disk_bytes: 0,
        disks: Vec::new(),
        memory_bytes: 0,
        paths: Vec::new(),
        transport: start.options.transport,
        compression: "none".into(),
        error: Some(error.to_string()),
        insecure: start.options.insecure,
        vm: start.vm.clone(),
        from: start.manager.config.site.clone(),
        to: start.to.clone(),
        started_at,
        network: None,
    }
}

impl SourceCtx {
    /// Runs the migration to its end and records the report.
    async fn run(mut self, resolve: watch::Receiver<Option<Outcome>>) {
        let mut done = Done::default();
        let mut tally = Tally::default();
        if let Err(error) = self.update(|_| {}) {
            tracing::error!(id = %self.id, error = %crate::http::chain(&error), "cannot persist the migration");
        }
        tracing::info!(id = %self.id, vm = %self.vm, to = %self.to, "migration started");
        let result = self.drive(&mut done, &mut tally, resolve).await;
        if let Err(e) = &result {
            let text = crate::http::chain(e);
            if self.phase().destination_runs() {
                tracing::error!(id = %self.id, error = %text, "error after the destination took over");
            } else {
                tracing::warn!(id = %self.id, to = %self.to, error = %text, "migration failed; rolling back");
                self.rollback(&done).await;
                if !self.phase().is_terminal() {
                    let event = if matches!(e, SourceError::Cancelled) {
                        SourceEvent::Cancel
                    } else {
                        SourceEvent::Fail(text.clone())
                    };
                    if let Err(refused) = self.advance(event) {
                        tracing::error!(id = %self.id, error = %refused, "cannot record the rollback");
                    }
                }
            }
        }
        let meter = self.meter.take();
        if let Some(error) = meter.as_ref().and_then(PathMeter::error) {
            tracing::warn!(id = %self.id, %error, "per-path byte counts incomplete");
        }
        let paths = meter.map(PathMeter::finish).unwrap_or_default();
        let phase = self.phase();
        let mut report = MigrationReport {
            status: ReportStatus::Failed,
            id: self.id.to_string(),
            total_ms: tally.total_ms.unwrap_or_else(|| ms(self.started.elapsed())),
            downtime_ms: None,
            qemu_downtime_ms: tally.qemu_downtime_ms,
            fixed_ms: None,
            phases: tally.phases.clone(),
            blackout: tally.blackout.clone(),
            disk_bytes: tally.disk_bytes,
            disks: std::mem::take(&mut tally.disks),
            memory_bytes: tally.memory.bytes,
            paths,
            transport: self.plan.transport,
            compression: compression_name(&self.plan.compression),
            error: None,
            insecure: self.options.insecure,
            vm: self.vm.clone(),
            from: self.manager.config.site.clone(),
            to: self.to.clone(),
            started_at: self.started_at_ms,
            network: tally.network.take(),
        };
        report.apply_phase(&phase);
        if report.status == ReportStatus::Completed {
            let copy = report.phases.disk_ms.unwrap_or(0) + report.phases.memory_ms.unwrap_or(0);
            report.fixed_ms = Some(report.total_ms.saturating_sub(copy));
        }
        tracing::info!(id = %self.id, vm = %self.vm, to = %self.to, status = ?report.status, total_ms = report.total_ms, downtime_ms = ?report.downtime_ms, "migration finished");
        // Nothing is left here once rolled back, or once the tunnel closed.
        if phase.is_terminal() && self.source_job().tunnel.is_none() {
            let _ = self.manager.store.remove_job(self.id.as_str());
        }
        self.manager.migrations.finish(&self.vm, report);
    }

    async fn drive(
        &self,
        done: &mut Done,
        tally: &mut Tally,
        resolve: watch::Receiver<Option<Outcome>>,
    ) -> Result<(), SourceError> {
        let step = Instant::now();
        self.progress(Phase::Prepare, 0, self.record.memory_mib << 20, 0, 0);
        self.manager
            .migrations
            .phase(&self.vm, SourcePhase::Preparing.name(), None);
        let ready = prepare::source(self).await;
        // A prepare that failed on the way may have left something there.
        done.dest_prepared = true;
        let ready = ready?;
        if let Some(meter) = &self.meter {
            let ports: Vec<u16> = [Some(ready.memory_port), ready.nbd_port]
                .into_iter()
                .flatten()
                .collect();
            meter.watch_ports(&ports);
        }
        self.advance(SourceEvent::DestinationReady)?;
        done.plan_staged = network::stage_plan(self, &ready).await;
        done.tunnel = network::open_tunnel(self).await?.is_some();
        tally.phases.prepare_ms = Some(ms(step.elapsed()));

        let step = Instant::now();
        self.note_phase();
        (done.mirrors, tally.disks) = disk::start(self, &ready).await?;
        tally.disk_bytes = disk::wait_ready(self, &done.mirrors).await?;
        self.advance(SourceEvent::DisksReady)?;
        tally.phases.disk_ms = Some(ms(step.elapsed()));

        let step = Instant::now();
        self.note_phase();
        memory::start(self, &ready).await?;
        done.memory = true;
        // Opened now so that the commit, sent while the VM is paused, pays
        // no handshakes.
        let ahead = match self.peer.connect_ahead(PEER_CONNECT_TIMEOUT).await {
            Ok(connection) => Some(connection),
            Err(error) => {
                tracing::warn!(id = %self.id, error = %crate::http::chain(&error), "cannot open the commit connection ahead; the commit will open one");
                None
            }
        };
        let paused = memory::until_paused(self, &mut tally.memory).await?;
        done.paused = true;
        if done.tunnel {
            done.steered = network::steer_to_tunnel(self).await;
        }
        self.mark_vm(VmState::Paused);
        self.advance(SourceEvent::SourcePaused {
            at: self.offset_of(paused.at),
        })?;
        tally.phases.memory_ms = Some(ms(step.elapsed()));

        let step = Instant::now();
        self.note_phase();
        if !done.mirrors.is_empty() {
            tally.disk_bytes = disk::hand_over(self, &done.mirrors, &mut tally.disks).await?;
            done.mirrors.clear();
        }
        let since_pause = |t: SystemTime| t.duration_since(paused.at).ok().map(ms);
        tally.blackout.continued_ms = since_pause(SystemTime::now());
        let finished = switchover::finish_memory(self, paused.postcopy).await?;
        tally.blackout.sent_ms = since_pause(SystemTime::now());
        tally.qemu_downtime_ms = finished.qemu_downtime_ms;
        tally.blackout.bytes = finished.downtime_bytes;
        tally.memory.bytes = finished.memory_bytes.max(tally.memory.bytes);
        // Persisted before the request leaves: from here the destination
        // decides.
        self.advance(SourceEvent::CommitSent)?;
        tally.blackout.commit_asked_ms = since_pause(SystemTime::now());
        self.note_phase();
        let manager = self.manager.clone();
        let vm = self.vm.clone();
        let settled = switchover::settle(&self.peer, ahead, &self.id, resolve, |note| {
            manager.migrations.phase(
                &vm,
                SourcePhase::AwaitingCommit {
                    paused_at: Duration::ZERO,
                }
                .name(),
                note,
            );
        })
        .await;
        let paused_at = self.offset_of(paused.at);
        let resumed_at = match settled {
            switchover::Settled::Committed {
                resumed_at,
                received_at,
                arrived_at,
            } => {
                tally.blackout.commit_received_ms = received_at.and_then(since_pause);
                tally.blackout.arrived_ms = arrived_at.and_then(since_pause);
                tally.blackout.resumed_ms = resumed_at.and_then(since_pause);
                // Clocks of two hosts: never before the pause.
                let resumed = resumed_at
                    .map_or(paused_at, |t| self.offset_of(t))
                    .max(paused_at);
                self.advance(SourceEvent::DestinationCommitted {
                    resumed_at: resumed,
                })?;
                resumed
            }
            switchover::Settled::Resolved(Outcome::Committed) => {
                self.advance(SourceEvent::Resolved(Outcome::Committed))?;
                paused_at
            }
            switchover::Settled::Aborted => {
                self.advance(SourceEvent::DestinationAborted)?;
                return Err(SourceError::DestinationAborted);
            }
            switchover::Settled::Resolved(Outcome::Aborted) => {
                self.advance(SourceEvent::Resolved(Outcome::Aborted))?;
                return Err(SourceError::ResolvedAborted);
            }
        };
        tally.phases.switchover_ms = Some(ms(step.elapsed()));

        // The VM runs at the destination: only now does it go away here.
        if paused.postcopy {
            let step = Instant::now();
            self.wait_postcopy_done().await;
            tally.phases.postcopy_ms = Some(ms(step.elapsed()));
        }
        self.manager.remove_migrated(&self.vm).await;
        if let Err(error) = self.advance(SourceEvent::SourceRemoved) {
            tracing::error!(id = %self.id, %error, "cannot record the removal");
        }
        tally.total_ms = Some(ms(self.started.elapsed()));
        self.note_phase();
        let step = Instant::now();
        tally.network = network::follow_handoff(self, ms(resumed_at)).await;
        tally.phases.handoff_ms = Some(ms(step.elapsed()));
        if let Err(error) = self.advance(SourceEvent::NetworkDone) {
            tracing::error!(id = %self.id, %error, "cannot record the end of the handoff");
        }
        Ok(())
    }

    /// Shows the current phase in `migrations`.
    fn note_phase(&self) {
        self.manager
            .migrations
            .phase(&self.vm, self.phase().name(), None);
    }

    /// Records the VM's lifecycle state.
    fn mark_vm(&self, state: VmState) {
        if let Ok(mut record) = self.manager.record(&self.vm) {
            record.state = state;
            if let Err(error) = self.manager.store.put(&record) {
                tracing::error!(id = %self.id, %error, "cannot record the VM's state");
            }
        }
    }

    /// With postcopy, the destination runs while pages still flow from
    /// here: wait until the last one left.
    async fn wait_postcopy_done(&self) {
        let deadline = Instant::now() + POSTCOPY_LIMIT;
        while Instant::now() < deadline {
            match self
                .live
                .qmp
                .query_migrate()
                .await
                .ok()
                .and_then(|i| i.status)
            {
                Some(s) if s.is_finished() => return,
                None => return,
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        tracing::error!(id = %self.id, "postcopy did not finish; removing the source copy anyway");
    }

    /// Undoes what was set up; the source VM ends up running.
    async fn rollback(&self, done: &Done) {
        if let Some(nic) = &done.plan_staged {
            network::retire_plan(self, nic).await;
        }
        if done.memory {
            memory::rollback(self).await;
        }
        disk::rollback(self, &done.mirrors).await;
        if done.steered {
            network::unsteer(self).await;
        }
        if done.paused || done.memory {
            switchover::rollback(self).await;
        }
        let _ = self.live.qmp.object_del(qmp_steps::TLS_OBJECT).await;
        if done.tunnel {
            network::close_tunnel(self).await;
        }
        if done.dest_prepared {
            prepare::rollback_source(self).await;
        }
    }
}

impl Manager {
    /// The record and live handles of a running VM.
    pub(crate) async fn running_vm(
        &self,
        vm: &str,
    ) -> Result<(crate::vm::VmRecord, crate::manager::Live), ManagerError> {
        let record = self.record(vm)?;
        let live = self.live.lock().await.get(vm).cloned();
        match live {
            Some(l) if record.state == VmState::Running => Ok((record, l)),
            _ => Err(ManagerError::Conflict(format!(
                "VM {vm:?} is not running ({})",
                record.state
            ))),
        }
    }
}
