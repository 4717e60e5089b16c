//! Starting, cancelling and listing the migrations this site drives.

use std::sync::Arc;

use edgemig_api::{MigrateRequest, MigrationView, VmState};

use super::{Manager, ManagerError};
use crate::migration::source::SourceJob;

impl Manager {
    /// Starts migrating `vm` as `req` says; returns at once (the migration
    /// runs on; follow it with [`Manager::migration`]).
    pub async fn migrate(
        self: &Arc<Self>,
        vm: &str,
        req: MigrateRequest,
    ) -> Result<MigrationView, ManagerError> {
        let record = self.record(vm)?;
        if record.state != VmState::Running {
            return Err(ManagerError::Conflict(format!(
                "VM {vm:?} is not running ({})",
                record.state
            )));
        }
        if req.to == self.config.site {
            return Err(ManagerError::Invalid(format!(
                "VM {vm:?} is already at site {}",
                req.to
            )));
        }
        req.options
            .validate()
            .map_err(|e| ManagerError::Invalid(format!("Invalid migration options: {e}")))?;
        let peer = self
            .config
            .peers
            .iter()
            .find(|p| p.site == req.to)
            .ok_or_else(|| {
                let known: Vec<_> = self.config.peers.iter().map(|p| p.site.as_str()).collect();
                ManagerError::Missing(format!(
                    "Unknown site {:?} (known peers: {})",
                    req.to,
                    known.join(", ")
                ))
            })?;
        if self.peer_tls().is_none() {
            return Err(ManagerError::Unavailable(
                "This site has no TLS files: migrations need [tls] in the site config".into(),
            ));
        }
        let cancel = self
            .migrations
            .begin(vm, &req.to)
            .ok_or_else(|| ManagerError::Conflict(format!("VM {vm:?} is already migrating")))?;
        let job = SourceJob {
            manager: self.clone(),
            vm: vm.to_string(),
            to: req.to.clone(),
            peer_addr: peer.address,
            options: req.options,
            cancel,
            started: std::time::Instant::now(),
            meter: None,
            last_paths: std::sync::Mutex::new(None),
        };
        tracing::info!(vm, to = %req.to, "migration started");
        tokio::spawn(job.run());
        self.migration(vm)
    }

    /// Asks the running migration of `vm` to stop.
    pub fn cancel_migration(&self, vm: &str) -> Result<MigrationView, ManagerError> {
        if !self.migrations.cancel(vm) {
            return Err(ManagerError::Conflict(format!(
                "VM {vm:?} is not migrating"
            )));
        }
        self.migration(vm)
    }

    /// The running (else latest) migration of `vm`.
    pub fn migration(&self, vm: &str) -> Result<MigrationView, ManagerError> {
        self.migrations
            .latest(vm)
            .ok_or_else(|| ManagerError::Missing(format!("No migration of VM {vm:?} known here")))
    }

    /// Every running and recent migration.
    pub fn migrations(&self) -> Vec<MigrationView> {
        self.migrations.list()
    }
}

impl Manager {
    /// The Prometheus text of this agent's metrics.
    pub async fn metrics(&self) -> Result<String, ManagerError> {
        let records = self.store.all().map_err(ManagerError::Store)?;
        let states = ["running", "stopped", "crashed", "incoming"];
        let counts: Vec<(&str, usize)> = states
            .iter()
            .map(|s| {
                (
                    *s,
                    records.iter().filter(|r| r.state.to_string() == *s).count(),
                )
            })
            .collect();
        let (totals, running) = self.migrations.totals();
        Ok(crate::metrics::render(
            &self.config.site,
            &counts,
            running,
            &totals,
        ))
    }
}
