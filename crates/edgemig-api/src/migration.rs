//! Local API bodies of migrations (`edgemig migrate`, `edgemig migrations`).

use edgemig_migration::{MigrateOptions, MigrationReport, Outcome, ProgressEvent};
use serde::{Deserialize, Serialize};

/// `POST /v1/vms/{name}/migrate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrateRequest {
    /// Destination site.
    pub to: String,
    /// How to migrate.
    #[serde(default)]
    pub options: MigrateOptions,
}

/// `POST /v1/vms/{name}/migrate/resolve`: settle a migration whose
/// outcome is unknown (the destination cannot be asked). Saying
/// `committed` removes the VM here; saying `aborted` resumes it here. The
/// operator must know: saying `aborted` of a VM that runs at the
/// destination runs it twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolveRequest {
    /// What happened at the destination.
    pub outcome: Outcome,
}

/// One migration as the source agent sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MigrationView {
    /// The migration's id.
    #[serde(default)]
    pub id: String,
    /// VM name.
    pub vm: String,
    /// Destination site.
    pub to: String,
    /// Whether it is still running.
    pub running: bool,
    /// Its phase while running (`preparing`, `disk`, `memory`,
    /// `switchover`, `awaiting_commit`, `committed`, `network`).
    #[serde(default)]
    pub phase: Option<String>,
    /// Why it waits, when the outcome is unknown.
    #[serde(default)]
    pub note: Option<String>,
    /// Latest progress while running.
    pub progress: Option<ProgressEvent>,
    /// The final report once finished.
    pub report: Option<MigrationReport>,
}
