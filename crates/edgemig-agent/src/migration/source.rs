//! The source side of a migration, driven as one task: ask the destination
//! to prepare, mirror the disk, stream memory, switch over, resume the VM at
//! the destination, and only then remove it here. Any failure before the
//! destination runs the VM leaves the source VM running and unchanged and
//! the destination cleaned up.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::Method;
use edgemig_api::peer::{
    HandoffStatus, IncomingReady, IncomingRequest, IncomingStatus, IncomingVm,
};
use edgemig_guest_proto::GuestRequest;
use edgemig_migration::{
    ConvergenceAction, ConvergenceConfig, ConvergenceMonitor, HostEnv, MigrateOptions,
    MigrationPlan, MigrationReport, MigrationSample, NetworkReport, PathBytes, PathThroughput,
    Phase, PlannedCompression, ProgressEvent, ReportStatus, plan_migration,
};
use edgemig_pki::PeerClient;
use edgemig_qmp::{KnownEvent, Qmp};
use tokio::sync::watch;

use super::path_meter::PathMeter;
use super::qmp_steps;
use crate::images;
use crate::manager::{Live, Manager, ManagerError};
use crate::vm::VmRecord;

/// How often QEMU's progress is sampled.
const POLL: Duration = Duration::from_millis(500);
/// Longest wait for the destination's network handoff before reporting.
const HANDOFF_WAIT: Duration = Duration::from_secs(900);
/// Limit for one peer request.
const PEER_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a migration stopped before the VM ran at the destination.
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
        phase: &'static str,
        /// Why.
        #[source]
        source: edgemig_qmp::QmpError,
    },
    /// QEMU reported the migration failed.
    #[error("Migration failed in QEMU: {0}")]
    Migration(String),
    /// The disk mirror failed.
    #[error("Disk mirror failed: {0}")]
    Mirror(String),
    /// Local set-up failed.
    #[error(transparent)]
    Manager(#[from] ManagerError),
}

fn qmp_err(phase: &'static str) -> impl FnOnce(edgemig_qmp::QmpError) -> SourceError {
    move |source| SourceError::Qmp { phase, source }
}

/// How long the CPU is watched to tell the spare cores for compression.
const SPARE_CPU_WINDOW: Duration = Duration::from_millis(500);

/// What was set up so far, for the rollback.
#[derive(Debug, Default)]
struct Done {
    dest_prepared: bool,
    /// The guest NIC a handoff plan was staged for.
    plan_staged: Option<String>,
    mirror: bool,
    memory: bool,
    tunnel: Option<u32>,
}

/// Numbers gathered along the way.
#[derive(Debug, Default)]
struct Tally {
    disk_bytes: u64,
    memory_bytes: u64,
    downtime_ms: u64,
    network: Option<NetworkReport>,
    /// When the migration switched to postcopy, if it did.
    postcopy_at: Option<Instant>,
}

/// One migration in progress.
pub struct SourceJob {
    pub(crate) manager: Arc<Manager>,
    pub(crate) vm: String,
    pub(crate) to: String,
    pub(crate) peer_addr: SocketAddr,
    pub(crate) options: MigrateOptions,
    pub(crate) cancel: watch::Receiver<bool>,
    /// When the migration was requested.
    pub(crate) started: Instant,
    /// Bytes per path (set when the job runs).
    pub(crate) meter: Option<PathMeter>,
    /// Last per-path sample, for the per-path throughput of progress events.
    pub(crate) last_paths: std::sync::Mutex<Option<(Instant, Vec<PathBytes>)>>,
}

/// The report's view of the destination's handoff status; times move from
/// "since the VM resumed" to "since the migration started". An unfinished
/// handoff says so and has no retirement time.
fn network_report(h: &HandoffStatus, resumed_at: u64, finished: bool) -> NetworkReport {
    NetworkReport {
        handoff: if finished {
            h.state.clone()
        } else {
            format!("unfinished ({})", h.state)
        },
        old_address: h.old_address.clone(),
        new_address: h.new_address.clone(),
        announced_ms: h.announced_ms.map(|m| m + resumed_at),
        retired_ms: h.retired_ms.filter(|_| finished).map(|m| m + resumed_at),
        moved: h.moved,
        on_old: h.on_old,
    }
}

/// Whether a destination QEMU of version `theirs` (`major.minor.micro`)
/// takes migrations from a source of major version `ours`. QEMU supports
/// migration between different versions only with matching machine types,
/// which edgemig does not pin yet, so it requires the same major version.
fn compatible_qemu(theirs: &str, ours: u32) -> bool {
    theirs.split('.').next().and_then(|m| m.parse::<u32>().ok()) == Some(ours)
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn compression_name(c: &PlannedCompression) -> String {
    match c {
        PlannedCompression::None => "none".into(),
        PlannedCompression::Zstd { level } => format!("zstd:{level}"),
    }
}

impl SourceJob {
    /// Runs the migration to its end and records the report.
    pub async fn run(mut self) {
        let started = self.started;
        let started_at = unix_ms();
        let mut tally = Tally::default();
        let mut done = Done::default();
        let plan = self.plan(crate::host::spare_cores(SPARE_CPU_WINDOW).await);
        self.meter = Some(PathMeter::start(self.manager.path_names().await));
        let result = self.drive(&plan, &mut done, &mut tally).await;
        let meter = self.meter.take();
        if let Some(error) = meter.as_ref().and_then(PathMeter::error) {
            tracing::warn!(vm = %self.vm, %error, "per-path byte counts incomplete");
        }
        let paths = meter.map(PathMeter::finish).unwrap_or_default();
        let (status, error) = match &result {
            Ok(()) => (ReportStatus::Completed, None),
            Err(e) => {
                let text = crate::http::chain(e);
                tracing::warn!(vm = %self.vm, to = %self.to, error = %text, "migration failed; rolling back");
                self.rollback(&done).await;
                let status = if matches!(e, SourceError::Cancelled) {
                    ReportStatus::Cancelled
                } else {
                    ReportStatus::Failed
                };
                (status, Some(text))
            }
        };
        let report = MigrationReport {
            status,
            total_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            downtime_ms: (status == ReportStatus::Completed).then_some(tally.downtime_ms),
            disk_bytes: tally.disk_bytes,
            memory_bytes: tally.memory_bytes,
            paths,
            transport: plan.transport,
            compression: compression_name(&plan.compression),
            error,
            insecure: self.options.insecure,
            vm: self.vm.clone(),
            from: self.manager.config.site.clone(),
            to: self.to.clone(),
            started_at,
            network: tally.network.take(),
        };
        tracing::info!(vm = %self.vm, to = %self.to, status = ?report.status, total_ms = report.total_ms, "migration finished");
        self.manager.migrations.finish(&self.vm, report);
    }

    fn plan(&self, spare_cores: f64) -> MigrationPlan {
        let c = &self.manager.config;
        let record = self.manager.record(&self.vm).ok();
        let env = HostEnv {
            path_bandwidth_bps: c
                .migration_path_mbit
                .iter()
                .map(|m| m * 1_000_000)
                .collect(),
            spare_cores,
            vcpus: record.as_ref().map_or(1, |r| r.vcpus),
            memory_bytes: record.as_ref().map_or(0, |r| r.memory_mib << 20),
            disk_bytes: record.as_ref().and_then(|r| r.disk_mib.map(|d| d << 20)),
        };
        plan_migration(&self.options, &env)
    }

    fn check_cancel(&self) -> Result<(), SourceError> {
        if *self.cancel.borrow() {
            Err(SourceError::Cancelled)
        } else {
            Ok(())
        }
    }

    fn report_progress(&self, phase: Phase, done: u64, left: u64, bps: u64, dirty_bps: u64) {
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

    fn peer(&self) -> Result<PeerClient, SourceError> {
        let tls = self.manager.peer_tls().ok_or_else(|| {
            ManagerError::Unavailable(
                "This site has no TLS files: migrations need [tls] in the site config".into(),
            )
        })?;
        PeerClient::new(&tls, self.peer_addr, &self.to).map_err(|source| SourceError::Peer {
            site: self.to.clone(),
            source,
        })
    }

    async fn peer_call<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, SourceError> {
        self.peer()?
            .request_json(method, path, body, PEER_TIMEOUT)
            .await
            .map_err(|source| SourceError::Peer {
                site: self.to.clone(),
                source,
            })
    }

    async fn live(&self) -> Result<(VmRecord, Live), SourceError> {
        let record = self.manager.record(&self.vm)?;
        let live = self.manager.live.lock().await.get(&self.vm).cloned();
        let live =
            live.ok_or_else(|| ManagerError::Conflict(format!("VM {:?} is not running", self.vm)))?;
        Ok((record, live))
    }

    async fn drive(
        &mut self,
        plan: &MigrationPlan,
        done: &mut Done,
        tally: &mut Tally,
    ) -> Result<(), SourceError> {
        let (record, live) = self.live().await?;
        let qmp = &live.qmp;
        let mptcp = plan.transport == edgemig_migration::Transport::Mptcp;
        let tls = !self.options.insecure;
        self.report_progress(Phase::Prepare, 0, record.memory_mib << 20, 0, 0);
        if tls {
            let dir = self
                .manager
                .qemu_tls_dir()
                .ok_or_else(|| ManagerError::Unavailable("This site has no TLS files for the data path (use --insecure to migrate without)".into()))?;
            let _ = qmp.object_del(qmp_steps::TLS_OBJECT).await;
            qmp_steps::add_tls_creds(qmp, &dir.display().to_string(), "client")
                .await
                .map_err(qmp_err("prepare"))?;
        }
        let request = IncomingRequest {
            vm: IncomingVm {
                name: record.name.clone(),
                memory_mib: record.memory_mib,
                vcpus: record.vcpus,
                disk_mib: record.disk_mib,
                mac_seed: record.mac_seed,
                address: format!("{}/{}", record.address, record.prefix_len),
                gateway: record
                    .gateway
                    .unwrap_or_else(|| self.manager.config.vm_network.gateway())
                    .to_string(),
                active_nic: record.active_nic,
                base_digest: record.base_digest.clone(),
                disk_top_bytes: record.disk_mib.map_or(0, |_| {
                    images::allocated_bytes(&self.manager.files(&record.name).data_disk())
                }),
                disk_base_bytes: record
                    .base_digest
                    .as_deref()
                    .and_then(|d| self.manager.images.get(d))
                    .map_or(0, |b| b.file_bytes),
                follow: record.follow.clone(),
            },
            source_site: self.manager.config.site.clone(),
            mptcp,
            tls,
            capabilities: plan.capabilities.clone(),
            parameters: plan.parameters.clone(),
            handoff: self.options.handoff,
        };
        self.check_cancel()?;
        let ready: IncomingReady = self
            .peer_call(Method::POST, "/v1/peer/incoming", Some(&request))
            .await?;
        done.dest_prepared = true;
        if let Some(meter) = &self.meter {
            let ports: Vec<u16> = [Some(ready.memory_port), ready.nbd_port]
                .into_iter()
                .flatten()
                .collect();
            meter.watch_ports(&ports);
        }
        let ours = qmp.version();
        if !compatible_qemu(&ready.qemu_version, ours.major) {
            return Err(SourceError::Migration(format!(
                "QEMU {} at {} cannot take a VM from QEMU {ours} here (same major version needed)",
                ready.qemu_version, self.to
            )));
        }
        let host = self.peer_addr.ip().to_string();
        if self.options.handoff {
            done.plan_staged = self.stage_handoff_plan(&live, &record, &ready).await;
        }

        if let (Some(port), Some(_)) = (ready.nbd_port, record.disk_mib) {
            let sync = if ready.base_present {
                edgemig_qmp::MirrorSyncMode::Top
            } else {
                edgemig_qmp::MirrorSyncMode::Full
            };
            tracing::info!(vm = %record.name, ?sync, "mirroring the data disk");
            qmp_steps::start_mirror(qmp, &host, port, mptcp, tls, sync)
                .await
                .map_err(qmp_err("disk"))?;
            done.mirror = true;
            loop {
                self.check_cancel()?;
                let job = qmp_steps::mirror_job(qmp).await.map_err(qmp_err("disk"))?;
                let Some(job) = job else {
                    return Err(SourceError::Mirror(
                        "the mirror job ended before it was ready".into(),
                    ));
                };
                if let Some(err) = job.io_status.as_deref().filter(|s| *s != "ok") {
                    return Err(SourceError::Mirror(format!("I/O status {err}")));
                }
                tally.disk_bytes = job.offset;
                self.report_progress(
                    Phase::Disk,
                    job.offset,
                    job.len.saturating_sub(job.offset),
                    0,
                    0,
                );
                if job.ready {
                    break;
                }
                tokio::time::sleep(POLL).await;
            }
        }

        qmp_steps::set_capabilities(qmp, &plan.capabilities)
            .await
            .map_err(qmp_err("memory"))?;
        let mut params = plan.parameters.clone();
        if let Some(map) = params.as_object_mut() {
            map.insert(
                "tls-creds".into(),
                if tls {
                    qmp_steps::TLS_OBJECT.into()
                } else {
                    "".into()
                },
            );
        }
        qmp_steps::set_parameters(qmp, &params)
            .await
            .map_err(qmp_err("memory"))?;
        qmp_steps::start_memory(qmp, &host, ready.memory_port, mptcp)
            .await
            .map_err(qmp_err("memory"))?;
        done.memory = true;
        self.stream_memory(qmp, plan, tally).await?;

        // Switchover happened: the source is paused (postmigrate).
        let switched = Instant::now();
        if done.mirror {
            qmp_steps::end_mirror(qmp, true)
                .await
                .map_err(qmp_err("switchover"))?;
            done.mirror = false;
        }
        // The old address's network reaches the destination from now on.
        if let std::net::IpAddr::V4(remote) = self.peer_addr.ip() {
            self.manager
                .open_source_tunnel(record.vni(), remote)
                .await?;
            done.tunnel = Some(record.vni());
        }
        let resumed: IncomingStatus = self
            .peer_call(
                Method::POST,
                &format!("/v1/peer/incoming/{}/resume", record.name),
                None::<&()>,
            )
            .await?;
        if !resumed.running {
            return Err(SourceError::Migration(
                "the destination did not resume the VM".into(),
            ));
        }
        let handover_ms = u64::try_from(switched.elapsed().as_millis()).unwrap_or(u64::MAX);
        tracing::info!(vm = %self.vm, qemu_downtime_ms = tally.downtime_ms, handover_ms, "switchover done");
        tally.downtime_ms += handover_ms;
        if let Some(at) = tally.postcopy_at {
            // In postcopy the VM stops at the switch to postcopy and runs
            // again only at the destination's resume.
            tally.downtime_ms = u64::try_from(at.elapsed().as_millis()).unwrap_or(u64::MAX);
        }
        self.report_progress(Phase::Network, tally.memory_bytes, 0, 0, 0);
        // The VM runs at the destination: only now does it go away here.
        done.tunnel = None;
        self.manager.remove_migrated(&record.name).await;
        let resumed_at = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        tally.network = self.follow_handoff(&record.name, resumed_at).await;
        Ok(())
    }

    /// Waits for the destination's network handoff and summarizes it.
    /// `resumed_at`: ms from the migration's start to the VM resuming at the
    /// destination (the handoff's times count from there).
    async fn follow_handoff(&self, vm: &str, resumed_at: u64) -> Option<NetworkReport> {
        let deadline = Instant::now() + HANDOFF_WAIT;
        loop {
            let status: Result<IncomingStatus, _> = self
                .peer_call(Method::GET, &format!("/v1/peer/incoming/{vm}"), None::<&()>)
                .await;
            let handoff = status.ok().and_then(|s| s.handoff);
            if let Some(h) = &handoff
                && !matches!(h.state.as_str(), "pending" | "announced" | "none")
            {
                return Some(network_report(h, resumed_at, true));
            }
            if Instant::now() > deadline {
                return handoff.map(|h| network_report(&h, resumed_at, false));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Polls `query-migrate` until the memory stream completes.
    async fn stream_memory(
        &self,
        qmp: &Qmp,
        plan: &MigrationPlan,
        tally: &mut Tally,
    ) -> Result<(), SourceError> {
        let mut monitor = ConvergenceMonitor::new(ConvergenceConfig::from_plan(plan));
        // QEMU announces status changes (the `events` capability): waiting on
        // them instead of sleeping notices the switchover at once.
        let mut events = qmp.subscribe();
        let started = Instant::now();
        let mut postcopy = false;
        loop {
            if self.check_cancel().is_err() {
                let _ = qmp.migrate_cancel().await;
                return Err(SourceError::Cancelled);
            }
            let info = qmp.query_migrate().await.map_err(qmp_err("memory"))?;
            let status = info
                .status
                .as_ref()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default();
            let ram = info.ram.clone().unwrap_or_default();
            tally.memory_bytes = ram.transferred.unwrap_or(tally.memory_bytes);
            match status.as_str() {
                "completed" => {
                    tally.downtime_ms = info.downtime.unwrap_or(0);
                    return Ok(());
                }
                "failed" | "cancelled" => {
                    return Err(SourceError::Migration(info.error_desc.unwrap_or(status)));
                }
                _ => {}
            }
            let page = ram.page_size.unwrap_or(4096);
            let bps = (ram.mbps.unwrap_or(0.0) * 1e6) as u64;
            let dirty_bps = ram.dirty_pages_rate.unwrap_or(0) * page * 8;
            self.report_progress(
                Phase::Memory,
                ram.transferred.unwrap_or(0),
                ram.remaining.unwrap_or(0),
                bps,
                dirty_bps,
            );
            let sample = MigrationSample {
                elapsed: started.elapsed(),
                transferred_bytes: ram.transferred.unwrap_or(0),
                remaining_bytes: ram.remaining.unwrap_or(0),
                dirty_pages_rate: ram.dirty_pages_rate.unwrap_or(0),
                page_size: page,
                throughput_bps: bps,
                iteration: ram.dirty_sync_count.unwrap_or(0),
                cpu_throttle_percentage: info
                    .cpu_throttle_percentage
                    .and_then(|p| u8::try_from(p).ok()),
            };
            let decision = monitor.observe(&sample);
            if decision.action == ConvergenceAction::StartPostcopy
                && !postcopy
                && status == "active"
            {
                tracing::info!(vm = %self.vm, why = %decision.reason, "switching to postcopy");
                qmp.migrate_start_postcopy()
                    .await
                    .map_err(qmp_err("memory"))?;
                postcopy = true;
                tally.postcopy_at = Some(Instant::now());
            }
            let _ = events
                .wait_for(|e| matches!(e.known(), KnownEvent::Migration { .. }), POLL)
                .await;
        }
    }

    /// Tells the guest (protocol 2 and later) where its handoff NIC goes:
    /// it configures the NIC itself the moment its carrier comes up at the
    /// destination. Returns the NIC; `None` when the guest cannot take a
    /// plan (the destination's host-driven handoff does it all then).
    async fn stage_handoff_plan(
        &self,
        live: &Live,
        record: &VmRecord,
        ready: &IncomingReady,
    ) -> Option<String> {
        let (Some(address), Some(gateway)) = (&ready.next_address, &ready.next_gateway) else {
            return None;
        };
        if live.guest.agent().is_none_or(|a| a.protocol < 2) {
            return None;
        }
        let nic = format!("eth{}", 1 - record.active_nic.min(1));
        let plan = GuestRequest::NicPlan {
            nic: nic.clone(),
            address: address.clone(),
            gateway: gateway.clone(),
        };
        match live.guest.request(plan, Duration::from_secs(10)).await {
            Ok(_) => {
                tracing::info!(vm = %self.vm, %nic, %address, "handoff plan staged in the guest");
                Some(nic)
            }
            Err(e) => {
                tracing::warn!(vm = %self.vm, error = %crate::http::chain(&e), "cannot stage the handoff plan; the destination will configure the NIC");
                None
            }
        }
    }

    /// Undoes what was set up; the source VM ends up running.
    async fn rollback(&self, done: &Done) {
        if let Ok((_, live)) = self.live().await {
            if let Some(nic) = &done.plan_staged {
                let _ = live
                    .guest
                    .request(
                        GuestRequest::NicRetire { nic: nic.clone() },
                        Duration::from_secs(10),
                    )
                    .await;
            }
            let qmp = &live.qmp;
            if done.memory {
                let _ = qmp.migrate_cancel().await;
            }
            if done.mirror {
                let _ = qmp_steps::end_mirror(qmp, false).await;
            }
            let _ = qmp.object_del(qmp_steps::TLS_OBJECT).await;
            if let Ok(status) = qmp.query_status().await
                && !status.running
                && let Err(error) = qmp.cont().await
            {
                tracing::error!(vm = %self.vm, %error, "cannot resume the source VM after a failed migration");
            }
        }
        if let Some(vni) = done.tunnel {
            let _ = self.manager.close_source_tunnel(vni).await;
        }
        if done.dest_prepared {
            let abort: Result<serde_json::Value, _> = self
                .peer_call(
                    Method::POST,
                    &format!("/v1/peer/incoming/{}/abort", self.vm),
                    None::<&()>,
                )
                .await;
            if let Err(error) = abort {
                tracing::warn!(vm = %self.vm, to = %self.to, error = %crate::http::chain(&error), "destination cleanup failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn qemu_compatibility_needs_the_same_major() {
        assert!(super::compatible_qemu("10.0.2", 10));
        assert!(super::compatible_qemu("10.1.0", 10));
        assert!(!super::compatible_qemu("9.2.0", 10));
        assert!(!super::compatible_qemu("garbage", 10));
    }
}
