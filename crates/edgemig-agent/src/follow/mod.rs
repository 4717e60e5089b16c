//! The follow controller of a site: every [`TICK`], for each VM here with
//! the `follow` policy, it holds the VM's lease in the site directory (so
//! no other controller acts on the VM), gathers the inputs (the guest's
//! clients, every site's distance to them, the cost of moving), asks the
//! pure decision component (`edgemig-policy`) and starts a migration when
//! it says so. Without the directory, or without the lease, it decides
//! nothing and the VM keeps running where it is.

mod inputs;
pub mod probe;
pub mod record;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use edgemig_api::{MigrateRequest, VmState};
use edgemig_directory::{Directory, Lease};
use edgemig_migration::{MigrateOptions, ReportStatus};
use edgemig_policy::{Action, Observation};

use crate::manager::{Manager, unix_ms};

/// How often the controller decides.
pub const TICK: Duration = Duration::from_secs(2);
/// Lease time-to-live; renewed every tick.
pub const LEASE_TTL: Duration = Duration::from_secs(10);

/// Starts the controller when the site has a directory.
pub fn start(manager: &Arc<Manager>) {
    let Some(directory) = manager.directory.clone() else {
        return;
    };
    let weak = Arc::downgrade(manager);
    tokio::spawn(async move {
        let mut leases: HashMap<String, Lease> = HashMap::new();
        let mut registered = false;
        loop {
            let Some(m) = weak.upgrade() else { return };
            if !registered {
                registered = m.register_site(&directory).await;
            }
            m.follow_tick(&directory, &mut leases).await;
            drop(m);
            tokio::time::sleep(TICK).await;
        }
    });
}

impl Manager {
    async fn register_site(&self, directory: &Directory) -> bool {
        let peer = self
            .config
            .listen
            .map(|a| a.to_string())
            .unwrap_or_default();
        match directory
            .register_site(&self.config.site, &peer, Some(&self.config.api_socket))
            .await
        {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(error = %crate::http::chain(&e), "cannot register the site in the directory");
                false
            }
        }
    }

    /// One round of decisions.
    async fn follow_tick(
        self: &Arc<Self>,
        directory: &Directory,
        leases: &mut HashMap<String, Lease>,
    ) {
        let Ok(records) = self.store.all() else {
            return;
        };
        let following: Vec<_> = records
            .into_iter()
            .filter(|r| r.follow.is_some() && r.state == VmState::Running)
            .collect();
        // Leases of VMs that left (or stopped following): record where a
        // migration took them, then let go.
        let gone: Vec<String> = leases
            .keys()
            .filter(|vm| !following.iter().any(|r| &r.name == *vm))
            .cloned()
            .collect();
        for vm in gone {
            if self.migrations.is_running(&vm) {
                // Keep the lease until the migration's outcome is known.
                if let Some(lease) = leases.get(&vm) {
                    let _ = directory.renew(lease).await;
                }
                continue;
            }
            if let Some(lease) = leases.remove(&vm) {
                if let Some(to) = self.completed_migration_to(&vm) {
                    let _ = directory.guarded_set_location(&lease, &to).await;
                }
                let _ = directory.release(lease).await;
            }
        }
        for record in following {
            let status = self.follow_one(directory, leases, &record).await;
            self.set_follow_status(&record.name, Some(status));
        }
    }

    fn completed_migration_to(&self, vm: &str) -> Option<String> {
        let view = self.migration(vm).ok()?;
        let report = view.report?;
        (report.status == ReportStatus::Completed).then_some(report.to)
    }

    /// Decides for one VM; returns the controller's status for it.
    async fn follow_one(
        self: &Arc<Self>,
        directory: &Directory,
        leases: &mut HashMap<String, Lease>,
        record: &crate::vm::VmRecord,
    ) -> String {
        let vm = &record.name;
        let site = &self.config.site;
        // The lease first: without it, nothing is decided.
        let lease = match leases.remove(vm) {
            Some(lease) => match directory.renew(&lease).await {
                Ok(true) => lease,
                Ok(false) => return "lease lost; not deciding".into(),
                Err(e) => {
                    leases.insert(vm.clone(), lease);
                    return format!(
                        "directory unavailable: {}; not deciding",
                        crate::http::chain(&e)
                    );
                }
            },
            None => match directory.acquire(vm, site, LEASE_TTL).await {
                Ok(Some(lease)) => {
                    // A new lease: the VM runs here now (it arrived, or the
                    // controller started); the directory learns it once.
                    let _ = directory.guarded_set_location(&lease, site).await;
                    lease
                }
                Ok(None) => {
                    let holder = directory.lease_holder(vm).await.ok().flatten();
                    return format!(
                        "lease held by {}; not deciding",
                        holder.as_deref().unwrap_or("another controller")
                    );
                }
                Err(e) => {
                    return format!(
                        "directory unavailable: {}; not deciding",
                        crate::http::chain(&e)
                    );
                }
            },
        };
        if self.migrations.is_running(vm) {
            leases.insert(vm.clone(), lease);
            return "migration running".into();
        }
        let status = self.decide(directory, &lease, record).await;
        leases.insert(vm.clone(), lease);
        status
    }

    async fn decide(
        self: &Arc<Self>,
        directory: &Directory,
        lease: &Lease,
        record: &crate::vm::VmRecord,
    ) -> String {
        let vm = &record.name;
        let report = match self.guest_connections(vm).await {
            Ok(r) => r,
            Err(e) => return format!("no client data: {e}; not deciding"),
        };
        let clients = inputs::clients(&report);
        let observation = Observation {
            at_ms: unix_ms(),
            current_site: self.config.site.clone(),
            migration_in_progress: false,
            clients: self.site_distances(&clients).await,
            migration_cost: self.migration_costs(record).await,
        };
        // Apply the decision to the freshest record (the policy may have
        // been replaced meanwhile: the last one stands).
        let decision = {
            let _op = self.ops.lock().await;
            let Ok(mut fresh) = self.record(vm) else {
                return "VM gone".into();
            };
            let Some(follow) = fresh.follow.as_mut() else {
                return "policy removed".into();
            };
            let policy = follow.policy.clone();
            let decision = follow.follower.observe(&observation, &policy);
            record::append(
                &self.config.state_dir.join("follow"),
                vm,
                &record::RecordLine {
                    observation: &observation,
                    policy: &policy,
                    decision: &decision,
                },
            );
            if let Err(e) = self.store.put(&fresh) {
                tracing::warn!(vm, error = %crate::http::chain(&e), "cannot store the follow state");
            }
            decision
        };
        tracing::info!(vm, decision = %decision, "follow decision");
        let Action::Migrate { to } = &decision.action else {
            return "following".into();
        };
        // Fencing: act only while the lease is still ours.
        if let Err(e) = directory.check_lease(lease).await {
            return format!("lease lost before migrating: {}", crate::http::chain(&e));
        }
        let request = MigrateRequest {
            to: to.clone(),
            options: MigrateOptions::default(),
        };
        match self.migrate(vm, request).await {
            Ok(_) => format!("migrating to {to}"),
            Err(e) => format!("migration to {to} refused: {}", crate::http::chain(&e)),
        }
    }
}
