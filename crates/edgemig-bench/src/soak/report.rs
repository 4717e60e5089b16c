//! What the soak reports: a line per migration and the summary (field
//! names are a contract: `edgemig bench soak --json`).

use edgemig_migration::ReportStatus;
use serde::Serialize;

use super::inject::FaultRecord;
use super::plan::FaultKind;
use super::watch::SplitBrainReport;

/// How one migration ended, from where the VM runs afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The VM runs at the destination; nothing of it at the source.
    Completed,
    /// The VM runs at the source; nothing of it at the destination.
    RolledBack,
    /// The source agent refused to start it.
    NotStarted,
    /// It did not settle within the limit: the VM did not run at exactly
    /// one site with the other site clear (the soak stops there).
    Unsettled,
}

impl Outcome {
    /// Name in lines.
    pub fn name(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::RolledBack => "rolled_back",
            Self::NotStarted => "not_started",
            Self::Unsettled => "UNSETTLED",
        }
    }
}

/// One migration of the soak.
#[derive(Debug, Clone, Serialize)]
pub struct SoakRun {
    /// 1-based.
    pub index: u32,
    /// The migration's id (`null` when it did not start).
    pub id: Option<String>,
    /// Source site.
    pub from: String,
    /// Destination site.
    pub to: String,
    /// How it ended.
    pub outcome: Outcome,
    /// The source's report status, when it had a report.
    pub status: Option<ReportStatus>,
    /// The source's report error, or why it did not start or settle.
    pub error: Option<String>,
    /// The source's `total_ms`.
    pub total_ms: Option<u64>,
    /// The source's `downtime_ms` (completed migrations).
    pub downtime_ms: Option<u64>,
    /// From the request until the VM ran at exactly one site, ms.
    pub settle_ms: u64,
    /// Longest gap between echo answers from the request until settled.
    pub stall_ms: u64,
    /// The faults of this migration (the one before it included).
    pub faults: Vec<FaultRecord>,
    /// Memory verification afterwards (`null`: not done).
    pub memory_ok: Option<bool>,
    /// Disk verification afterwards (`null`: not done).
    pub disk_ok: Option<bool>,
    /// Why a verification failed or could not be done.
    pub verify_error: Option<String>,
}

/// Faults carried out, by kind.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FaultCounts {
    /// Source agents killed (between migrations: the VM's site).
    pub kill_source: u32,
    /// Destination agents killed (between migrations: the other site).
    pub kill_destination: u32,
    /// One path cut.
    pub cut_path: u32,
    /// Every path cut.
    pub cut_both_paths: u32,
    /// Cancels sent.
    pub cancel: u32,
    /// Of those, refused by the agent (after the switchover).
    pub cancel_refused: u32,
    /// Planned faults not carried out (the migration ended before the
    /// phase they waited for).
    pub not_injected: u32,
}

impl FaultCounts {
    /// Adds one fault's record.
    pub fn add(&mut self, rec: &FaultRecord) {
        if !rec.injected {
            self.not_injected += 1;
            return;
        }
        match rec.fault.kind {
            FaultKind::KillSource => self.kill_source += 1,
            FaultKind::KillDestination => self.kill_destination += 1,
            FaultKind::CutPath => self.cut_path += 1,
            FaultKind::CutBothPaths => self.cut_both_paths += 1,
            FaultKind::Cancel => {
                self.cancel += 1;
                self.cancel_refused += u32::from(rec.refused == Some(true));
            }
        }
    }

    /// Faults carried out.
    pub fn injected(&self) -> u32 {
        self.kill_source + self.kill_destination + self.cut_path + self.cut_both_paths + self.cancel
    }
}

/// Alice's clients.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Connections {
    /// Echo probes answered.
    pub echo_answered: u64,
    /// Median of the echo's per-second mean RTTs, ms (one probe is in
    /// flight at a time: stalls shorter than this cannot be seen).
    pub echo_rtt_ms: f64,
    /// Broken echo connections (the client's own count).
    pub echo_errors: u64,
    /// Echo sessions found hung: connected, no error, but no answer
    /// within 15 s once the VM had settled (replaced by a new session).
    pub echo_hung: u32,
    /// Echo sessions started (a new one replaces one that broke and got
    /// no answers any more).
    pub echo_sessions: u32,
    /// When each echo connection broke (seconds from the soak's start,
    /// the address the session talked to).
    pub echo_breaks: Vec<(f64, String)>,
    /// Broken bulk connections (the bulk client's own count).
    pub bulk_errors: u64,
    /// Bulk streams found hung (as `echo_hung`).
    pub bulk_hung: u32,
    /// Bulk streams started.
    pub bulk_streams: u32,
    /// Megabits the bulk stream received.
    pub bulk_megabits: f64,
    /// Whether the last bulk client still ran at the end.
    pub bulk_running: bool,
    /// What the bulk client wrote on stderr.
    pub bulk_log: Vec<String>,
}

/// The whole soak (field names are a contract).
#[derive(Debug, Clone, Serialize)]
pub struct SoakReport {
    /// Migrations attempted.
    pub migrations: u32,
    /// Of those, completed.
    pub completed: u32,
    /// Of those, rolled back (the VM stayed).
    pub rolled_back: u32,
    /// Of those, refused at the start.
    pub not_started: u32,
    /// Of those, not settled within the limit.
    pub unsettled: u32,
    /// Moments (episodes of consecutive samples) the VM ran at two sites.
    pub split_brain: u32,
    /// Alice's lost connections: those her clients counted as broken
    /// (echo + bulk errors) and those found hung after a migration.
    pub lost_connections: u64,
    /// Memory or disk verifications that failed or could not be made.
    pub verify_failures: u32,
    /// Things left that should not be (`leaked`).
    pub leaks: u32,
    /// Longest gap between echo answers over the whole soak, ms.
    pub max_stall_ms: u64,
    /// Faults carried out.
    pub faults_injected: u32,
    /// Faults by kind.
    pub faults: FaultCounts,
    /// Whether faults were asked for.
    pub faults_enabled: bool,
    /// The seed of the fault plan.
    pub seed: u64,
    /// The split-brain watch.
    pub split_brain_watch: SplitBrainReport,
    /// Alice's clients.
    pub connections: Connections,
    /// What was left.
    pub leaked: Vec<String>,
    /// Why the soak stopped before its last migration, if it did.
    pub stopped_early: Option<String>,
    /// Where the agents' and QEMU's logs were copied (after a finding or
    /// when asked).
    pub logs: Option<String>,
    /// Wall time of the soak, testbed included, s.
    pub duration_s: f64,
    /// One line per migration.
    pub runs: Vec<SoakRun>,
    /// Conditions, in words.
    pub conditions: String,
}

impl SoakReport {
    /// Whether the soak found something wrong.
    pub fn findings(&self) -> bool {
        self.split_brain > 0
            || self.lost_connections > 0
            || self.verify_failures > 0
            || self.leaks > 0
            || self.unsettled > 0
            || self.stopped_early.is_some()
            || !self.connections.bulk_running
    }
}
