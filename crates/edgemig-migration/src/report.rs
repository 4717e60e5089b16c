//! What `edgemig migrate --json` prints: one [`ProgressEvent`] JSON line
//! per tick, then the final [`MigrationReport`].
//!
//! The report's field names are a **contract**: scripts and the bench
//! parse them. Every key is always present (absent values are `null`);
//! `report_tests.rs` pins the exact key set. Add keys only with care and
//! never rename one.

use crate::job::{Phase, RollbackCause, SourcePhase};
use crate::options::Transport;
use serde::{Deserialize, Serialize};

/// Errors while producing report output.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// JSON serialisation failed.
    #[error("cannot serialise report: {0}")]
    Json(#[from] serde_json::Error),
}

/// Final outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportStatus {
    /// The VM runs at the destination and the network moved.
    Completed,
    /// Failed; see `error`.
    Failed,
    /// Cancelled by the operator.
    Cancelled,
}

impl ReportStatus {
    /// Status of an ended migration; `None` while it runs.
    pub fn of(phase: &SourcePhase) -> Option<ReportStatus> {
        match phase {
            SourcePhase::Completed { .. } => Some(ReportStatus::Completed),
            SourcePhase::RolledBack {
                cause: RollbackCause::Cancelled,
                ..
            } => Some(ReportStatus::Cancelled),
            SourcePhase::RolledBack { .. } => Some(ReportStatus::Failed),
            _ => None,
        }
    }
}

/// One disk's mirror.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskTransfer {
    /// `root` or `data`.
    pub role: String,
    /// `top` (only the VM's own writes: the destination held the image
    /// underneath) or `full`.
    pub sync: String,
    /// Bytes the mirror copied.
    pub bytes: u64,
}

/// How long each part of a migration took, ms (null: it did not happen).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseTimes {
    /// Asking the destination to prepare until it was ready.
    pub prepare_ms: Option<u64>,
    /// Disk mirrors until every one was ready.
    pub disk_ms: Option<u64>,
    /// Memory streaming until the source paused.
    pub memory_ms: Option<u64>,
    /// Source paused until the destination confirmed it runs the VM.
    pub switchover_ms: Option<u64>,
    /// With postcopy: the destination running the VM until the last page
    /// arrived (null: no postcopy).
    #[serde(default)]
    pub postcopy_ms: Option<u64>,
    /// Destination running until the old address was retired (the network
    /// handoff, after the migration proper).
    pub handoff_ms: Option<u64>,
}

/// Where the VM's pause went: marks in ms after the source VM's `STOP`
/// event, in the order they happen (null: not reached, or not known, as
/// from a destination that does not say). In the testbed both sites share
/// a clock; between real hosts the destination's marks carry the clocks'
/// offset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blackout {
    /// The disks were handed over (each mirror completed) and QEMU was told
    /// to send the rest (`migrate-continue`).
    pub continued_ms: Option<u64>,
    /// The source's QEMU sent its last byte (`completed`).
    pub sent_ms: Option<u64>,
    /// The decision to commit was persisted and the request left.
    pub commit_asked_ms: Option<u64>,
    /// The destination took the commit request in.
    pub commit_received_ms: Option<u64>,
    /// The destination's QEMU had received and loaded the whole state
    /// (its `completed`).
    pub arrived_ms: Option<u64>,
    /// The destination's QEMU resumed the VM (its `RESUME`): the downtime.
    pub resumed_ms: Option<u64>,
    /// Bytes QEMU sent while the VM was paused (its `downtime-bytes`: the
    /// last dirty pages and the device state).
    pub bytes: Option<u64>,
}

/// Bytes carried by one path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathBytes {
    /// Path name as configured (e.g. "path1").
    pub name: String,
    /// Bytes sent over it (MPTCP subflow counters).
    pub bytes: u64,
}

/// The final report. Field names are a contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationReport {
    /// "completed", "failed" or "cancelled".
    pub status: ReportStatus,
    /// The migration's id (in every log line and peer call about it).
    #[serde(default)]
    pub id: String,
    /// Wall time from the request until the VM ran at the destination and
    /// its copy here was removed, ms (the network handoff is not in it:
    /// see `phases.handoff_ms`).
    pub total_ms: u64,
    /// The VM's pause: from the source VM's `STOP` event to the destination
    /// VM's `RESUME` event (QMP event times; both sites' clocks), ms; null
    /// if it never switched over.
    pub downtime_ms: Option<u64>,
    /// QEMU's own downtime figure (`query-migrate` `downtime`), ms.
    #[serde(default)]
    pub qemu_downtime_ms: Option<u64>,
    /// The time that is not the copy itself: `total_ms` minus the disk
    /// and memory phases, ms.
    #[serde(default)]
    pub fixed_ms: Option<u64>,
    /// Time of each phase.
    #[serde(default)]
    pub phases: PhaseTimes,
    /// Where the switchover's pause went.
    #[serde(default)]
    pub blackout: Blackout,
    /// Disk bytes the mirror processed (QEMU block-job progress: with
    /// `sync: full`, unallocated areas count though they cost little on
    /// the wire; with `sync: top`, only the top layer counts).
    pub disk_bytes: u64,
    /// Each disk's mirror.
    #[serde(default)]
    pub disks: Vec<DiskTransfer>,
    /// Memory bytes sent.
    pub memory_bytes: u64,
    /// Bytes per path.
    pub paths: Vec<PathBytes>,
    /// "mptcp" or "tcp".
    pub transport: Transport,
    /// "none" or "zstd:LEVEL" (what was used, not what was asked).
    pub compression: String,
    /// Failure reason; null unless failed.
    pub error: Option<String>,
    /// Whether TLS was off.
    pub insecure: bool,
    /// VM name.
    pub vm: String,
    /// Source site.
    pub from: String,
    /// Destination site.
    pub to: String,
    /// Start time, Unix ms.
    pub started_at: u64,
    /// The network handoff; null when the VM did not reach the destination.
    #[serde(default)]
    pub network: Option<NetworkReport>,
}

/// The network part of a migration report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkReport {
    /// `done`, `timeout` or `not_possible: REASON` (the old address then
    /// stays reachable through the tunnel).
    pub handoff: String,
    /// Address before the migration (with prefix).
    pub old_address: String,
    /// Address at the destination (with prefix).
    pub new_address: String,
    /// When the new address was announced, ms after the migration started.
    pub announced_ms: Option<u64>,
    /// When the old address was retired, ms after the migration started.
    pub retired_ms: Option<u64>,
    /// Connections that moved to the new address.
    pub moved: u32,
    /// Connections still using only the old address at retirement.
    pub on_old: u32,
    /// Times the destination announced the new address again because MPTCP
    /// connections had not joined it (their ADD_ADDR was lost).
    #[serde(default)]
    pub reannounced: u32,
}

impl MigrationReport {
    /// Copies status, downtime and error from an ended migration; one that
    /// has not ended is reported as failed ("unfinished in PHASE").
    pub fn apply_phase(&mut self, phase: &SourcePhase) {
        self.status = ReportStatus::of(phase).unwrap_or(ReportStatus::Failed);
        self.downtime_ms = phase
            .downtime()
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.error = match phase {
            SourcePhase::RolledBack { cause, from } => Some(match cause {
                RollbackCause::Failed { reason } => format!("{from}: {reason}"),
                RollbackCause::Cancelled => format!("cancelled in {from}"),
                RollbackCause::DestinationAborted => {
                    format!("{from}: the destination aborted; the VM runs here as before")
                }
                RollbackCause::Resolved => {
                    format!("{from}: settled as aborted by the operator")
                }
            }),
            SourcePhase::Completed { .. } => None,
            other => Some(format!(
                "unfinished in {}",
                other.phase().map_or("?", Phase::as_str)
            )),
        };
    }

    /// Pretty JSON for `--json`.
    pub fn to_json(&self) -> Result<String, ReportError> {
        Ok(serde_json::to_string_pretty(self)?)
    }
}

/// Throughput of one path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathThroughput {
    /// Path name.
    pub name: String,
    /// bit/s.
    pub throughput_bps: u64,
}

/// One progress tick, printed as a JSON line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressEvent {
    /// Current phase ("prepare", "disk", "memory", "switchover", "network").
    pub phase: Phase,
    /// Bytes sent so far in this phase.
    pub bytes_done: u64,
    /// Bytes still to send in this phase.
    pub bytes_left: u64,
    /// Total throughput, bit/s.
    pub throughput_bps: u64,
    /// Throughput per path.
    pub paths: Vec<PathThroughput>,
    /// Guest dirty rate, bit/s (0 outside the memory phase).
    pub dirty_rate_bps: u64,
    /// Estimated time left, ms; null when the dirty rate outruns the paths.
    pub eta_ms: Option<u64>,
}

impl ProgressEvent {
    /// One line of JSON, newline-terminated.
    pub fn to_json_line(&self) -> Result<String, ReportError> {
        let mut s = serde_json::to_string(self)?;
        s.push('\n');
        Ok(s)
    }
}

/// Time to send `bytes_left` while the guest dirties `dirty_rate_bps`:
/// `bytes_left × 8 / (throughput − dirty)`, or `None` if that is not
/// positive.
pub fn eta_ms(bytes_left: u64, throughput_bps: u64, dirty_rate_bps: u64) -> Option<u64> {
    let net = throughput_bps
        .checked_sub(dirty_rate_bps)
        .filter(|n| *n > 0)?;
    let ms = u128::from(bytes_left) * 8 * 1000 / u128::from(net);
    Some(u64::try_from(ms).unwrap_or(u64::MAX))
}

#[cfg(test)]
#[path = "report_tests.rs"]
mod tests;
