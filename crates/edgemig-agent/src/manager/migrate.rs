//! Starting, cancelling, settling and listing the migrations this site
//! drives.

use std::sync::Arc;

use edgemig_api::migration::ResolveRequest;
use edgemig_api::{MigrateRequest, MigrationView, VmState};

use super::{Manager, ManagerError};
use crate::migration::id::MigrationId;
use crate::migration::source::Start;

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
        if req.options.postcopy == edgemig_migration::PostcopyPolicy::Fallback
            && let Some(why) = crate::qemu::spawn::userfaultfd_refusal(self.qemu_user)
        {
            return Err(ManagerError::Unavailable(format!(
                "Site {}: {why}",
                self.config.site
            )));
        }
        if req.options.insecure && !self.config.allow_insecure {
            return Err(ManagerError::Invalid(format!(
                "Site {} does not migrate without TLS: set allow_insecure = true in both sites' configs (testbeds only)",
                self.config.site
            )));
        }
        if !self.config.vm_network.subnet.contains(&record.address)
            && !self.is_address_site(&req.to, record.address)
        {
            return Err(ManagerError::Conflict(format!(
                "VM {vm:?} keeps its address {} of another site behind a tunnel (its handoff did not run): it can only move back to that site",
                record.address
            )));
        }
        let peer_addr = peer.address;
        let client = self.peer_client_for(&req.to)?;
        let id = MigrationId::random();
        let switches = self
            .migrations
            .begin(id.as_str(), vm, &req.to)
            .ok_or_else(|| ManagerError::Conflict(format!("VM {vm:?} is already migrating")))?;
        let start = Start {
            manager: self.clone(),
            id,
            vm: vm.to_string(),
            to: req.to.clone(),
            peer_addr,
            peer: client,
            options: req.options,
            switches,
            started: std::time::Instant::now(),
        };
        tokio::spawn(start.run());
        self.migration(vm)
    }

    /// Asks the running migration of `vm` to stop. Refused once the
    /// commit was asked: the outcome is then the destination's.
    pub fn cancel_migration(&self, vm: &str) -> Result<MigrationView, ManagerError> {
        let view = self.migration(vm)?;
        if view.running
            && matches!(
                view.phase.as_deref(),
                Some("awaiting_commit" | "committed" | "network")
            )
        {
            return Err(ManagerError::Conflict(format!(
                "VM {vm:?} is past its switchover ({}): it cannot be cancelled; if the destination cannot be reached, settle it with `edgemig migrate resolve`",
                view.phase.unwrap_or_default()
            )));
        }
        if !self.migrations.cancel(vm) {
            return Err(ManagerError::Conflict(format!(
                "VM {vm:?} is not migrating"
            )));
        }
        self.migration(vm)
    }

    /// Settles the unknown outcome of `vm`'s migration as the operator says.
    pub fn resolve_migration(
        &self,
        vm: &str,
        req: ResolveRequest,
    ) -> Result<MigrationView, ManagerError> {
        let view = self.migration(vm)?;
        if !view.running || view.phase.as_deref() != Some("awaiting_commit") {
            return Err(ManagerError::Conflict(format!(
                "VM {vm:?} has no migration waiting for its outcome"
            )));
        }
        if !self.migrations.resolve(vm, req.outcome) {
            return Err(ManagerError::Conflict(format!(
                "VM {vm:?} is not migrating"
            )));
        }
        tracing::warn!(vm, outcome = ?req.outcome, "operator settled a migration's outcome");
        self.migration(vm)
    }

    /// Whether `address` belongs to the VM network of site `site` (as the
    /// directory of peers knows it: only this site's own subnet is known,
    /// so a VM may move back to the site it came from).
    fn is_address_site(&self, site: &str, address: std::net::Ipv4Addr) -> bool {
        self.store
            .jobs()
            .unwrap_or_default()
            .iter()
            .filter_map(|j| j.destination().map(|d| (j, d)))
            .any(|(j, d)| {
                d.from == site
                    && self
                        .record(&j.vm)
                        .is_ok_and(|r| r.address == address && r.next_address.is_some())
            })
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
