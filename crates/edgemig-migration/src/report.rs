//! What `edgemig migrate --json` prints: one [`ProgressEvent`] JSON line
//! per tick, then the final [`MigrationReport`].
//!
//! The report's field names are a **contract**: scripts and the bench
//! parse them. Every key is always present (absent values are `null`);
//! `report_tests.rs` pins the exact key set. Add keys only with care and
//! never rename one.

use crate::options::Transport;
use crate::state::{MigrationState, Phase};
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
    /// Status of a terminal lifecycle state; `None` while running.
    pub fn of(state: &MigrationState) -> Option<ReportStatus> {
        match state {
            MigrationState::Completed { .. } => Some(ReportStatus::Completed),
            MigrationState::Failed { .. } => Some(ReportStatus::Failed),
            MigrationState::Cancelled { .. } => Some(ReportStatus::Cancelled),
            _ => None,
        }
    }
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
    /// Wall time from request to end, ms.
    pub total_ms: u64,
    /// Guest pause at switchover, ms; null if it never switched over.
    pub downtime_ms: Option<u64>,
    /// Disk bytes the mirror processed (QEMU block-job progress: with
    /// `sync: full`, unallocated areas count though they cost little on
    /// the wire; with `sync: top`, only the top layer counts).
    pub disk_bytes: u64,
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
}

impl MigrationReport {
    /// Copy status, downtime and error from a terminal lifecycle state;
    /// a non-terminal state is reported as failed ("unfinished in PHASE").
    pub fn apply_state(&mut self, state: &MigrationState) {
        self.status = ReportStatus::of(state).unwrap_or(ReportStatus::Failed);
        self.downtime_ms = state
            .downtime()
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.error = match state {
            MigrationState::Failed { reason, phase, .. } => Some(format!("{phase}: {reason}")),
            MigrationState::Cancelled { phase, .. } => Some(format!("cancelled in {phase}")),
            MigrationState::Completed { .. } => None,
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
