//! Local API bodies of migrations (`edgemig migrate`, `edgemig migrations`).

use edgemig_migration::{MigrateOptions, MigrationReport, ProgressEvent};
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

/// One migration as the source agent sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MigrationView {
    /// VM name.
    pub vm: String,
    /// Destination site.
    pub to: String,
    /// Whether it is still running.
    pub running: bool,
    /// Latest progress while running.
    pub progress: Option<ProgressEvent>,
    /// The final report once finished.
    pub report: Option<MigrationReport>,
}
