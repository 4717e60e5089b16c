//! Step 3, memory. Source: set the plan's capabilities and parameters (plus
//! `pause-before-switchover`, so that QEMU pauses the VM and waits before
//! its final pass: the disks are handed over in that window), start the
//! memory stream to the destination and follow it, helping convergence
//! (auto-converge, postcopy) as the plan allows, and keeping QEMU's
//! `downtime-limit` to the part of the user's pause the paths' measured
//! round trip leaves it, until QEMU paused the VM for the switchover. Rollback: cancel the stream (QEMU resumes the VM by
//! itself; the switchover step's rollback resumes it if not).

use std::time::{Duration, Instant, SystemTime};

use edgemig_api::peer::IncomingReady;
use edgemig_migration::{
    ConvergenceAction, ConvergenceConfig, ConvergenceMonitor, MigrationSample, Phase, pause_budget,
};
use edgemig_qmp::{KnownEvent, MigrationStatus};

use super::disk::destination_host;
use crate::migration::context::{SourceCtx, SourceError, qmp_err};
use crate::migration::qmp_steps;

/// Longest wait between two looks at QEMU's progress.
const POLL: Duration = Duration::from_millis(500);

/// What the stream reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paused {
    /// When QEMU paused the source VM (its `STOP` event).
    pub at: SystemTime,
    /// Whether the migration switched to postcopy on the way.
    pub postcopy: bool,
}

/// Numbers of the memory stream.
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryTally {
    /// Bytes sent so far.
    pub bytes: u64,
}

/// Configures QEMU and starts the memory stream.
pub async fn start(ctx: &SourceCtx, ready: &IncomingReady) -> Result<(), SourceError> {
    let qmp = &ctx.live.qmp;
    let mut caps = ctx.plan.capabilities.clone();
    caps.retain(|(name, _)| name != "pause-before-switchover");
    caps.push(("pause-before-switchover".into(), true));
    qmp_steps::set_capabilities(qmp, &caps)
        .await
        .map_err(qmp_err(Phase::Memory))?;
    let mut params = ctx.plan.parameters.clone();
    if let Some(map) = params.as_object_mut() {
        if ctx.options.insecure {
            map.insert("tls-creds".into(), "".into());
        } else {
            map.insert("tls-creds".into(), qmp_steps::TLS_OBJECT.into());
            map.insert("tls-hostname".into(), ctx.to.clone().into());
        }
    }
    qmp_steps::set_parameters(qmp, &params)
        .await
        .map_err(qmp_err(Phase::Memory))?;
    let mptcp = ctx.plan.transport == edgemig_migration::Transport::Mptcp;
    qmp_steps::start_memory(qmp, &destination_host(ctx, ready), ready.memory_port, mptcp)
        .await
        .map_err(qmp_err(Phase::Memory))
}

/// Follows the stream until QEMU paused the VM before its final pass.
pub async fn until_paused(ctx: &SourceCtx, tally: &mut MemoryTally) -> Result<Paused, SourceError> {
    let qmp = &ctx.live.qmp;
    let mut monitor = ConvergenceMonitor::new(ConvergenceConfig::from_plan(&ctx.plan));
    // Status changes and the pause arrive as events (the `events`
    // capability): waiting on them notices the switchover at once.
    let mut events = qmp.subscribe();
    let started = Instant::now();
    let mut postcopy = false;
    let mut stopped_at: Option<SystemTime> = None;
    let mut budget = PauseBudget::new(Duration::from_millis(ctx.plan.downtime_limit_ms));
    loop {
        if ctx.check_cancel().is_err() {
            return Err(SourceError::Cancelled);
        }
        let info = qmp.query_migrate().await.map_err(qmp_err(Phase::Memory))?;
        let status = info.status.clone().unwrap_or(MigrationStatus::None);
        let ram = info.ram.clone().unwrap_or_default();
        tally.bytes = ram.transferred.unwrap_or(tally.bytes);
        match status {
            MigrationStatus::PreSwitchover => {
                tracing::info!(id = %ctx.id, vm = %ctx.vm, downtime_limit_ms = budget.limit.as_millis() as u64, rtt_ms = budget.rtt.map(|r| r.as_millis() as u64), "paused for the switchover");
                let at = match stopped_at {
                    Some(at) => at,
                    None => stop_time(ctx).await,
                };
                return Ok(Paused { at, postcopy });
            }
            MigrationStatus::Failed | MigrationStatus::Cancelled | MigrationStatus::Completed => {
                return Err(SourceError::Migration(
                    info.error_desc
                        .unwrap_or_else(|| format!("QEMU's migration ended as {status}")),
                ));
            }
            _ => {}
        }
        let page = ram.page_size.unwrap_or(4096);
        let bps = (ram.mbps.unwrap_or(0.0) * 1e6) as u64;
        let dirty_bps = ram.dirty_pages_rate.unwrap_or(0) * page * 8;
        ctx.progress(
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
        budget.follow(ctx).await;
        let decision = monitor.observe(&sample);
        if decision.action == ConvergenceAction::StartPostcopy
            && !postcopy
            && status == MigrationStatus::Active
        {
            tracing::info!(id = %ctx.id, vm = %ctx.vm, why = %decision.reason, "switching to postcopy");
            qmp.migrate_start_postcopy()
                .await
                .map_err(qmp_err(Phase::Memory))?;
            postcopy = true;
        }
        let waited = events
            .wait_for(
                |e| matches!(e.known(), KnownEvent::Migration { .. } | KnownEvent::Stop),
                POLL,
            )
            .await;
        if let Ok(event) = waited
            && event.known() == KnownEvent::Stop
        {
            stopped_at = event.timestamp.to_system_time();
        }
    }
}

/// Smallest change of QEMU's `downtime-limit` worth a QMP call.
const LIMIT_STEP: Duration = Duration::from_millis(5);

/// QEMU's `downtime-limit` kept to the part of the user's `max_downtime`
/// left once the slowest path's round trip and the commit are counted
/// ([`pause_budget`]). The round trip is the migration's own subflows'
/// (sock_diag), queueing included, smoothed over the samples (weight 1/4
/// for the newest) so a single burst does not move the limit.
struct PauseBudget {
    limit: Duration,
    rtt: Option<Duration>,
}

impl PauseBudget {
    fn new(planned: Duration) -> Self {
        Self {
            limit: planned,
            rtt: None,
        }
    }

    /// Takes the meter's latest round trip and sets QEMU's limit when it
    /// moved by [`LIMIT_STEP`] or more. A QMP error leaves the limit as
    /// it was.
    async fn follow(&mut self, ctx: &SourceCtx) {
        let Some(sample) = ctx.meter.as_ref().and_then(|m| m.slowest_rtt()) else {
            return;
        };
        let rtt = self.rtt.map_or(sample, |old| (old * 3 + sample) / 4);
        self.rtt = Some(rtt);
        let wanted = pause_budget::qemu_downtime_limit(ctx.options.max_downtime, rtt);
        if wanted.abs_diff(self.limit) < LIMIT_STEP {
            return;
        }
        let ms = u64::try_from(wanted.as_millis()).unwrap_or(u64::MAX);
        let params = serde_json::json!({ "downtime-limit": ms });
        match qmp_steps::set_parameters(&ctx.live.qmp, &params).await {
            Ok(()) => {
                tracing::debug!(id = %ctx.id, rtt_ms = rtt.as_millis() as u64, downtime_limit_ms = ms, "QEMU's share of the pause");
                self.limit = wanted;
            }
            Err(e) => tracing::warn!(id = %ctx.id, error = %e, "cannot set QEMU's downtime-limit"),
        }
    }
}

/// When the VM paused, when its `STOP` event was missed: now.
async fn stop_time(ctx: &SourceCtx) -> SystemTime {
    tracing::debug!(id = %ctx.id, "no STOP event seen; taking the time of the pause as now");
    SystemTime::now()
}

/// Rollback: cancels the memory stream.
pub async fn rollback(ctx: &SourceCtx) {
    if let Err(error) = ctx.live.qmp.migrate_cancel().await {
        tracing::warn!(id = %ctx.id, %error, "cannot cancel the memory stream");
    }
}
