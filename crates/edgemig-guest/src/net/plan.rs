//! Staged NIC plans ("when this NIC's carrier comes up, configure it
//! so"): kept in memory, applied once the NIC has carrier — at staging if
//! it has it already, else by the link watcher ([`super::watch`]) on the
//! link notification that brings it.
//!
//! Applying a plan first gives every other NIC holding an address its
//! policy table and rule ([`nic::ensure_policy_for_others`]), then does
//! exactly what NicUp does ([`nic::nic_up`]), under the same lock as the
//! NicUp/NicRetire requests, so a NicUp with the same values afterwards
//! changes nothing.
//!
//! Plans are kept under the interface's real name (a plan may name its
//! NIC by MAC) and saved in the agent's [`Store`] on every change, so an
//! agent restart finds them again ([`Planner::restore`]): a pending plan
//! keeps waiting for its carrier, an applied one is only reported.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use edgemig_guest_proto::{MacAddr, NicPlanState, NicPlanStatus, NicPlansReport, NicReport};

use super::link::{self, NicRef};
use super::nic::{self, NicError};
use super::ops;
use super::rtnl::{Rtnl, RtnlError};
use crate::state::{SavedNic, SavedPlan, Store};

/// Errors of staging a plan (applying one never fails the request: the
/// outcome is the plan's state).
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The address or gateway is unusable.
    #[error("Bad NIC plan for {nic}")]
    BadInput {
        /// Interface.
        nic: String,
        /// What is wrong.
        #[source]
        source: NicError,
    },
    /// The interface does not exist.
    #[error("Cannot plan {nic}: no such network interface")]
    NoSuchNic {
        /// Interface.
        nic: String,
    },
    /// Looking at or setting up the interface failed.
    #[error("Cannot stage a plan for {nic}")]
    Link {
        /// Interface.
        nic: String,
        /// The error.
        #[source]
        source: RtnlError,
    },
}

/// One staged plan.
#[derive(Debug, Clone)]
struct Entry {
    mac: Option<MacAddr>,
    address: String,
    gateway: String,
    /// Distinguishes a plan from a later one for the same NIC.
    generation: u64,
    state: NicPlanState,
    staged_ms: u64,
    applied_ms: Option<u64>,
    report: Option<NicReport>,
}

/// The staged plans of the agent.
pub struct Planner {
    /// Serializes network changes with NicUp/NicRetire.
    net: Arc<Mutex<()>>,
    store: Arc<Store>,
    plans: Mutex<BTreeMap<String, Entry>>,
    start: Instant,
    start_uptime_ms: u64,
    generation: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means another thread panicked while holding it;
    // the plans themselves stay consistent (each update is one assignment).
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Planner {
    /// A planner sharing the network-change lock `net`, saving its plans in
    /// `store`; `uptime_ms` is the guest's uptime now (times in reports are
    /// uptimes).
    pub fn new(net: Arc<Mutex<()>>, store: Arc<Store>, uptime_ms: u64) -> Self {
        Self {
            net,
            store,
            plans: Mutex::new(BTreeMap::new()),
            start: Instant::now(),
            start_uptime_ms: uptime_ms,
            generation: AtomicU64::new(0),
        }
    }

    /// Guest uptime in ms, on the clock of the reports.
    pub fn now_ms(&self) -> u64 {
        let elapsed = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.start_uptime_ms.saturating_add(elapsed)
    }

    /// Stages a plan for `nic` (by MAC when given, else by name; replacing
    /// an earlier plan of that interface), sets the NIC administratively up
    /// so its carrier shows, and applies the plan at once if the carrier is
    /// there. Returns the plan's state.
    pub fn stage(
        &self,
        nic: NicRef<'_>,
        address: &str,
        gateway: &str,
    ) -> Result<NicPlanStatus, PlanError> {
        let asked = nic.to_string();
        nic::parse_input(address, gateway).map_err(|source| PlanError::BadInput {
            nic: asked.clone(),
            source,
        })?;
        let link_err = |source: RtnlError| {
            if source.errno() == Some(libc::ENODEV) {
                PlanError::NoSuchNic { nic: asked.clone() }
            } else {
                PlanError::Link {
                    nic: asked.clone(),
                    source,
                }
            }
        };
        let _guard = lock(&self.net);
        let mut rtnl = Rtnl::open().map_err(link_err)?;
        let link = link::resolve(&mut rtnl, nic).map_err(link_err)?;
        let nic = link.name.as_str();
        if !link.admin_up {
            ops::set_link_up(&mut rtnl, link.index, true).map_err(link_err)?;
        }
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        let entry = Entry {
            mac: link.mac,
            address: address.to_owned(),
            gateway: gateway.to_owned(),
            generation,
            state: NicPlanState::Pending,
            staged_ms: self.now_ms(),
            applied_ms: None,
            report: None,
        };
        lock(&self.plans).insert(nic.to_owned(), entry);
        self.save();
        eprintln!("edgemig-guest: plan for {nic} staged: {address} via {gateway}");
        self.apply_pending_locked();
        self.status(nic)
            .ok_or_else(|| PlanError::NoSuchNic { nic: asked.clone() })
    }

    /// Takes back the plans an earlier run of the agent saved: pending
    /// ones wait for their carrier again (the link watcher, or the next
    /// [`Planner::apply_pending`], applies them), the others are only
    /// reported. Returns how many plans there were.
    pub fn restore(&self) -> usize {
        let saved = self.store.snapshot().plans;
        let mut plans = lock(&self.plans);
        for p in &saved {
            let generation = self.generation.fetch_add(1, Ordering::Relaxed);
            plans.insert(
                p.nic.clone(),
                Entry {
                    mac: p.mac,
                    address: p.address.clone(),
                    gateway: p.gateway.clone(),
                    generation,
                    state: p.state.clone(),
                    staged_ms: p.staged_ms,
                    applied_ms: p.applied_ms,
                    report: p.report.clone(),
                },
            );
        }
        saved.len()
    }

    /// Writes the plans to the store.
    fn save(&self) {
        let records: Vec<SavedPlan> = lock(&self.plans)
            .iter()
            .map(|(nic, e)| SavedPlan {
                nic: nic.clone(),
                mac: e.mac,
                address: e.address.clone(),
                gateway: e.gateway.clone(),
                state: e.state.clone(),
                staged_ms: e.staged_ms,
                applied_ms: e.applied_ms,
                report: e.report.clone(),
            })
            .collect();
        self.store.update(|s| s.plans = records);
    }

    /// Whether some plan waits for its carrier.
    pub fn has_pending(&self) -> bool {
        lock(&self.plans)
            .values()
            .any(|e| e.state == NicPlanState::Pending)
    }

    /// Applies every pending plan whose NIC has carrier now; returns how
    /// many were attempted. Failures are logged and recorded in the plan.
    pub fn apply_pending(&self) -> usize {
        if !self.has_pending() {
            return 0;
        }
        let _guard = lock(&self.net);
        self.apply_pending_locked()
    }

    /// [`Self::apply_pending`] with the network lock held.
    fn apply_pending_locked(&self) -> usize {
        let pending: Vec<(String, Entry)> = lock(&self.plans)
            .iter()
            .filter(|(_, e)| e.state == NicPlanState::Pending)
            .map(|(n, e)| (n.clone(), e.clone()))
            .collect();
        if pending.is_empty() {
            return 0;
        }
        let mut rtnl = match Rtnl::open() {
            Ok(r) => r,
            Err(e) => {
                eprintln!("edgemig-guest: cannot check planned NICs: {e}");
                return 0;
            }
        };
        let mut attempted = 0;
        for (nic, entry) in pending {
            let outcome = match ops::link_state(&mut rtnl, &nic) {
                Ok(link) if link.carrier => apply(&nic, &entry),
                Ok(_) => continue,
                Err(e) if e.errno() == Some(libc::ENODEV) => Err(format!("{nic} no longer exists")),
                Err(e) => {
                    eprintln!("edgemig-guest: cannot check {nic}: {e}");
                    continue;
                }
            };
            attempted += 1;
            self.record(&nic, entry.generation, outcome);
        }
        attempted
    }

    /// Records the outcome of applying generation `generation` of `nic`'s
    /// plan, unless a newer plan replaced it meanwhile.
    fn record(&self, nic: &str, generation: u64, outcome: Result<NicReport, String>) {
        let now = self.now_ms();
        let applied = {
            let mut plans = lock(&self.plans);
            let Some(entry) = plans.get_mut(nic).filter(|e| e.generation == generation) else {
                return;
            };
            entry.applied_ms = Some(now);
            match outcome {
                Ok(report) => {
                    eprintln!(
                        "edgemig-guest: plan for {nic} applied at {now} ms: {} via {}",
                        entry.address, entry.gateway
                    );
                    entry.state = NicPlanState::Applied;
                    entry.report = Some(report);
                    Some(SavedNic {
                        nic: nic.to_owned(),
                        mac: entry.mac,
                        address: entry.address.clone(),
                        gateway: entry.gateway.clone(),
                    })
                }
                Err(reason) => {
                    eprintln!("edgemig-guest: plan for {nic} failed: {reason}");
                    entry.state = NicPlanState::Failed(reason);
                    None
                }
            }
        };
        if let Some(nic) = applied {
            self.store.update(|s| s.nic_applied(nic));
        }
        self.save();
    }

    /// Drops `nic`'s plan (when the NIC is retired).
    pub fn forget(&self, nic: &str) {
        let had = lock(&self.plans).remove(nic).is_some();
        if had {
            self.save();
        }
    }

    /// The state of `nic`'s plan, if one is staged.
    pub fn status(&self, nic: &str) -> Option<NicPlanStatus> {
        let now = self.now_ms();
        lock(&self.plans).get(nic).map(|e| status_of(nic, e, now))
    }

    /// Every staged plan, sorted by interface.
    pub fn report(&self) -> NicPlansReport {
        let now = self.now_ms();
        NicPlansReport {
            plans: lock(&self.plans)
                .iter()
                .map(|(nic, e)| status_of(nic, e, now))
                .collect(),
        }
    }
}

/// Applies a plan: policy routing for the other NICs, then NicUp.
fn apply(nic: &str, entry: &Entry) -> Result<NicReport, String> {
    let chain = |e: NicError| crate::handler::error_chain(&e);
    nic::ensure_policy_for_others(nic).map_err(chain)?;
    nic::nic_up(NicRef::name(nic), &entry.address, &entry.gateway).map_err(chain)
}

fn status_of(nic: &str, e: &Entry, now: u64) -> NicPlanStatus {
    NicPlanStatus {
        nic: nic.to_owned(),
        mac: e.mac,
        address: e.address.clone(),
        gateway: e.gateway.clone(),
        state: e.state.clone(),
        staged_ms: e.staged_ms,
        applied_ms: e.applied_ms,
        applied_ago_ms: e.applied_ms.map(|t| now.saturating_sub(t)),
        report: e.report.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_input_and_unknown_nic_are_errors() {
        let p = Planner::new(Arc::new(Mutex::new(())), Arc::new(Store::ephemeral()), 1000);
        assert!(matches!(
            p.stage(NicRef::name("eth0"), "10.0.0.1", "10.0.0.254"),
            Err(PlanError::BadInput { .. })
        ));
        assert!(matches!(
            p.stage(NicRef::name("eth0"), "10.0.0.1/24", "gw"),
            Err(PlanError::BadInput { .. })
        ));
        let missing = format!("nope{}", std::process::id() % 100_000);
        let err = p
            .stage(NicRef::name(&missing), "10.0.0.1/24", "10.0.0.254")
            .unwrap_err();
        assert!(matches!(err, PlanError::NoSuchNic { .. }), "{err:?}");
        assert!(p.report().plans.is_empty());
        assert!(!p.has_pending());
        assert_eq!(p.apply_pending(), 0);
    }

    #[test]
    fn clock_starts_at_the_given_uptime() {
        let p = Planner::new(Arc::new(Mutex::new(())), Arc::new(Store::ephemeral()), 5000);
        assert!(p.now_ms() >= 5000);
    }
}
