//! Step 4, switchover: the fenced hand-over of the running VM.
//!
//! Source, with the VM paused by QEMU before its final pass: hand the disks
//! over (each mirror completes cleanly), let QEMU send the rest
//! (`migrate-continue`), persist "commit asked", then ask the destination to
//! commit and keep asking, with backoff, until it answers `committed` or
//! `aborted`, or the operator settles it. The VM stays paused meanwhile: a
//! lost reply, cut paths or a restarting destination never make the source
//! guess. Rollback (only before the commit was asked): resume the VM here.
//!
//! Destination: a commit is taken only when the memory arrived; the
//! decision is persisted, the disks' exports are closed, then QEMU resumes
//! the VM. An abort is taken until then, and persisted: a later commit is
//! refused forever. Both answers repeat when asked again.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::Method;
use edgemig_api::VmState;
use edgemig_api::peer::{AbortReply, CommitReply};
use edgemig_migration::{
    AbortAnswer, CommitAnswer, DestinationPhase, IncomingMemory, Outcome, Phase,
};
use edgemig_pki::{PeerClient, PeerConnection, PeerError};
use edgemig_qmp::{KnownEvent, MigrationStatus, Qmp};
use tokio::sync::watch;

use crate::manager::{Manager, ManagerError};
use crate::migration::context::{SourceCtx, SourceError, qmp_err};
use crate::migration::id::MigrationId;
use crate::migration::qmp_steps;

/// Longest wait for QEMU to send its last state once continued.
const FINISH_LIMIT: Duration = Duration::from_secs(600);
/// Limit of one commit request.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(20);
/// First and longest pause between commit attempts.
const RETRY_FIRST: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(10);
/// How long a commit request waits at the destination for the memory
/// stream to finish arriving before it answers "not yet".
const ARRIVAL_WAIT: Duration = Duration::from_secs(5);
/// Longest wait for a migration event before the destination looks again.
const ARRIVAL_RECHECK: Duration = Duration::from_millis(100);
/// Limit of a commit request over the connection opened ahead (longer
/// than the destination waits for the memory to arrive); after it, the
/// source asks over fresh connections.
const AHEAD_TIMEOUT: Duration = Duration::from_secs(8);
/// How long the destination waits for QEMU's `RESUME` event.
const RESUME_EVENT_WAIT: Duration = Duration::from_secs(5);

/// How the outcome was settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// The destination runs the VM (since this time, when it said).
    Committed {
        /// Its QEMU's `RESUME` event.
        resumed_at: Option<SystemTime>,
        /// When it took the commit request in.
        received_at: Option<SystemTime>,
        /// When its QEMU had the whole state.
        arrived_at: Option<SystemTime>,
    },
    /// The destination never ran it and never will.
    Aborted,
    /// The operator said so.
    Resolved(Outcome),
}

/// What QEMU said once the last state left.
#[derive(Debug, Clone, Copy, Default)]
pub struct Finished {
    /// QEMU's own downtime figure, ms.
    pub qemu_downtime_ms: Option<u64>,
    /// Memory bytes sent.
    pub memory_bytes: u64,
    /// Bytes sent while the VM was paused.
    pub downtime_bytes: Option<u64>,
}

/// Source, VM paused: lets QEMU send its last state and waits until it did
/// (`completed`; with postcopy, until postcopy runs).
pub async fn finish_memory(ctx: &SourceCtx, postcopy: bool) -> Result<Finished, SourceError> {
    let qmp = &ctx.live.qmp;
    let mut events = qmp.subscribe();
    qmp.migrate_continue()
        .await
        .map_err(qmp_err(Phase::Switchover))?;
    let deadline = tokio::time::Instant::now() + FINISH_LIMIT;
    loop {
        let info = qmp
            .query_migrate()
            .await
            .map_err(qmp_err(Phase::Switchover))?;
        let status = info.status.clone().unwrap_or(MigrationStatus::None);
        let done = match status {
            MigrationStatus::Completed => true,
            MigrationStatus::PostcopyActive => postcopy,
            MigrationStatus::Failed | MigrationStatus::Cancelled => {
                return Err(SourceError::Migration(info.error_desc.unwrap_or_else(
                    || format!("QEMU's migration ended as {}", status.as_str()),
                )));
            }
            _ => false,
        };
        if done {
            let ram = info.ram.unwrap_or_default();
            return Ok(Finished {
                qemu_downtime_ms: info.downtime,
                memory_bytes: ram.transferred.unwrap_or(0),
                downtime_bytes: ram.downtime_bytes,
            });
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(SourceError::Migration(format!(
                "QEMU did not send its last state within {FINISH_LIMIT:?}"
            )));
        }
        let _ = events
            .wait_for(
                |e| matches!(e.known(), KnownEvent::Migration { .. }),
                Duration::from_millis(200),
            )
            .await;
    }
}

/// Asks the destination to commit migration `id` until it answers or the
/// operator settles it (`resolve`). `note` learns why it waits.
pub async fn settle(
    peer: &PeerClient,
    mut ahead: Option<PeerConnection>,
    id: &MigrationId,
    mut resolve: watch::Receiver<Option<Outcome>>,
    note: impl Fn(Option<String>),
) -> Settled {
    let path = format!("/v1/peer/migrations/{id}/commit");
    let mut pause = RETRY_FIRST;
    loop {
        if let Some(outcome) = *resolve.borrow() {
            note(None);
            return Settled::Resolved(outcome);
        }
        // The first request goes over the connection opened before the
        // pause, when it is still up; every later one over a fresh one.
        let answer: Result<CommitReply, PeerError> = match ahead.take() {
            Some(connection) if connection.is_open() => {
                connection
                    .request_json(Method::POST, &path, None::<&()>, AHEAD_TIMEOUT)
                    .await
            }
            _ => {
                peer.request_json(Method::POST, &path, None::<&()>, COMMIT_TIMEOUT)
                    .await
            }
        };
        match answer {
            Ok(CommitReply::Committed {
                resumed_at_unix_us,
                received_at_unix_us,
                arrived_at_unix_us,
            }) => {
                note(None);
                let at = |us: u64| (us > 0).then(|| UNIX_EPOCH + Duration::from_micros(us));
                return Settled::Committed {
                    resumed_at: at(resumed_at_unix_us),
                    received_at: at(received_at_unix_us),
                    arrived_at: at(arrived_at_unix_us),
                };
            }
            Ok(CommitReply::Aborted) => {
                note(None);
                return Settled::Aborted;
            }
            Ok(CommitReply::NotYet) => {
                note(Some(
                    "the destination is still receiving the VM's state".into(),
                ));
                pause = RETRY_FIRST;
            }
            Err(error) => {
                let why = crate::http::chain(&error);
                tracing::warn!(%id, error = %why, "commit outcome unknown; the VM stays paused and the destination is asked again");
                note(Some(format!(
                    "outcome unknown, asking {} again: {why}",
                    peer.site()
                )));
            }
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            _ = resolve.changed() => {}
        }
        pause = (pause * 2).min(RETRY_MAX);
    }
}

/// Source rollback before the commit was asked: the VM runs here again.
pub async fn rollback(ctx: &SourceCtx) {
    resume_source(&ctx.manager, &ctx.vm, &ctx.live.qmp).await;
}

/// Resumes the source VM if it is paused and records it running.
pub async fn resume_source(manager: &Manager, vm: &str, qmp: &Qmp) {
    if let Ok(status) = qmp.query_status().await
        && !status.running
        && let Err(error) = qmp.cont().await
    {
        tracing::error!(vm, %error, "cannot resume the source VM");
        return;
    }
    if let Ok(mut record) = manager.record(vm)
        && record.state == VmState::Paused
    {
        record.state = VmState::Running;
        let _ = manager.store.put(&record);
    }
}

/// What QEMU at the destination says of the incoming memory once it
/// arrived, or after [`ARRIVAL_WAIT`]: woken by QEMU's migration events,
/// so a commit that comes first is taken the moment the state is in.
async fn arrival(qmp: &Qmp) -> IncomingMemory {
    let mut events = qmp.subscribe();
    let deadline = tokio::time::Instant::now() + ARRIVAL_WAIT;
    loop {
        let memory = incoming_memory(qmp).await;
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if memory != IncomingMemory::Arriving || left.is_zero() {
            return memory;
        }
        // A look at least every ARRIVAL_RECHECK, in case an event is lost.
        let _ = events
            .wait_for(
                |e| matches!(e.known(), KnownEvent::Migration { .. }),
                left.min(ARRIVAL_RECHECK),
            )
            .await;
    }
}

/// What QEMU at the destination says of the incoming memory.
async fn incoming_memory(qmp: &Qmp) -> IncomingMemory {
    match qmp.query_migrate().await.ok().and_then(|i| i.status) {
        Some(MigrationStatus::Completed | MigrationStatus::PostcopyActive) => {
            IncomingMemory::Complete
        }
        Some(MigrationStatus::Failed | MigrationStatus::Cancelled) => IncomingMemory::Failed,
        None if qmp.is_closed() => IncomingMemory::Failed,
        _ => IncomingMemory::Arriving,
    }
}

fn unix_us(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

impl Manager {
    /// Destination: the source asks to commit migration `id`.
    pub async fn commit_incoming(
        self: &Arc<Self>,
        id: &MigrationId,
        caller: &str,
    ) -> Result<CommitReply, ManagerError> {
        let received_us = unix_us(SystemTime::now());
        let _op = self.ops.lock().await;
        let (job, dest) = self.destination_job(id, caller)?;
        let live = self.live.lock().await.get(&job.vm).cloned();
        let memory = match &live {
            Some(l) => arrival(&l.qmp).await,
            None => IncomingMemory::Failed,
        };
        match dest.phase.on_commit(memory) {
            CommitAnswer::AlreadyCommitted => Ok(CommitReply::Committed {
                resumed_at_unix_us: dest.phase.resumed_at_unix_us().unwrap_or(0),
                received_at_unix_us: 0,
                arrived_at_unix_us: 0,
            }),
            CommitAnswer::NotYet => Ok(CommitReply::NotYet),
            CommitAnswer::Refused => {
                if dest.phase != DestinationPhase::Aborted {
                    tracing::warn!(%id, vm = %job.vm, "incoming migration failed here; aborting");
                    self.abort_destination(id, &job.vm).await?;
                }
                Ok(CommitReply::Aborted)
            }
            CommitAnswer::Commit => {
                let Some(live) = live else {
                    return Ok(CommitReply::Aborted);
                };
                // The decision is durable before the VM runs.
                self.set_destination_phase(id, DestinationPhase::Committed)?;
                let resumed = self.resume_committed(id, &job.vm, &live).await?;
                Ok(CommitReply::Committed {
                    resumed_at_unix_us: resumed,
                    received_at_unix_us: received_us,
                    arrived_at_unix_us: live.arrived.get().map_or(0, |t| unix_us(*t)),
                })
            }
        }
    }

    /// Destination, committed: closes the disks' exports, resumes the VM,
    /// records it running and starts the handoff; returns when QEMU resumed
    /// it (Unix µs).
    pub(crate) async fn resume_committed(
        self: &Arc<Self>,
        id: &MigrationId,
        vm: &str,
        live: &crate::manager::Live,
    ) -> Result<u64, ManagerError> {
        let mut record = self.record(vm)?;
        let nodes: Vec<&str> = record.disks().iter().map(|d| d.role.node()).collect();
        if !nodes.is_empty()
            && let Err(error) = qmp_steps::unexport_disks(&live.qmp, &nodes).await
        {
            tracing::warn!(%id, vm, %error, "cannot close the disk exports; resuming anyway");
        }
        let mut events = live.qmp.subscribe();
        live.qmp.cont().await.map_err(ManagerError::Qmp)?;
        let resumed = events
            .wait_for(|e| e.known() == KnownEvent::Resume, RESUME_EVENT_WAIT)
            .await
            .ok()
            .and_then(|e| e.timestamp.to_system_time())
            .unwrap_or_else(SystemTime::now);
        let resumed_us = unix_us(resumed);
        self.set_destination_phase(
            id,
            DestinationPhase::Running {
                resumed_at_unix_us: resumed_us,
            },
        )?;
        record.state = VmState::Running;
        self.store.put(&record).map_err(ManagerError::Store)?;
        self.supervise(vm.to_string(), live.pid);
        crate::manager::greet(&live.guest, vm);
        if record.next_address.is_none() {
            // Back home: the tunnel that kept the address reachable while
            // the VM was away is not needed any more.
            self.close_home_tunnel(record.vni()).await;
        }
        self.start_handoff(id.clone(), vm, live);
        tracing::info!(%id, vm, pid = live.pid, "migrated VM runs here");
        Ok(resumed_us)
    }

    /// Destination: the source asks to abort migration `id`.
    pub async fn abort_incoming(
        &self,
        id: &MigrationId,
        caller: &str,
    ) -> Result<AbortReply, ManagerError> {
        let _op = self.ops.lock().await;
        let (job, dest) = self.destination_job(id, caller)?;
        match dest.phase.on_abort() {
            AbortAnswer::Refused => Ok(AbortReply::Committed),
            AbortAnswer::AlreadyAborted => Ok(AbortReply::Aborted),
            AbortAnswer::Abort => {
                self.abort_destination(id, &job.vm).await?;
                Ok(AbortReply::Aborted)
            }
        }
    }
}
