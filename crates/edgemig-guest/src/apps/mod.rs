//! MPTCP for the guest's unmodified applications (`MptcpApps`, protocol
//! 3): the scope the host asks for — every application, some systemd
//! units, or none — and how it is enforced:
//!
//! * **BPF** (kernel hook `update_socket_protocol`, Linux ≥ 6.6 with BTF;
//!   `edgemig-mptcpify`): `all` sets the hook's scope to every process;
//!   `units` to the units' cgroups (v2 ids, from `systemctl show -p
//!   ControlGroup`, or the unit's slice path plus its name while it is
//!   stopped). A unit that restarts gets a new cgroup, hence a new id: the
//!   [watcher](watch) follows the cgroup directories (inotify on their
//!   parents, plus a look every second) and rewrites the scope.
//! * **mptcpize** (no hook; `units` only): `mptcpize enable UNIT` makes the
//!   unit run with `LD_PRELOAD=libmptcpwrap.so` from its next start;
//!   `off`, or dropping the unit from the scope, runs `mptcpize disable`
//!   for the units the agent enabled.
//!
//! Sockets a process already has keep their protocol, so a unit running
//! when it enters the scope is reported [`UnitState::RestartNeeded`]
//! until its invocation id changes; `restart: true` has the agent restart
//! such units. The scope and that bookkeeping are saved in the agent's
//! [`Store`] and re-applied (never restarting anything) when the agent
//! starts again.

pub mod hook;
pub mod systemd;
pub mod watch;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use edgemig_guest_proto::mptcp_apps::{
    HookSupport, MptcpAppsReport, MptcpAppsSupport, MptcpMechanism, MptcpScope, UnitReport,
    UnitState,
};
use edgemig_mptcpify::{HookError, Scope, cgroup};

use crate::state::Store;
use hook::HookCtl;
use systemd::{Systemd, SystemdError, UnitInfo};

/// Errors of an `MptcpApps` request (nothing changed).
#[derive(Debug, thiserror::Error)]
pub enum AppsError {
    /// `all` without the hook.
    #[error(
        "MPTCP for all applications needs the kernel's update_socket_protocol hook \
         (Linux 6.6 or later with BTF), but {0}; a units scope can use mptcpize"
    )]
    NeedsHook(String),
    /// `units` without systemd.
    #[error("A units scope needs systemd, which does not run this guest")]
    NeedsSystemd,
    /// `units` with neither mechanism.
    #[error("A units scope needs the BPF hook or mptcpize: {0}, and mptcpize is not installed")]
    NoMechanism(String),
    /// `units` with no unit.
    #[error("A units scope needs at least one unit (use off for none)")]
    EmptyUnits,
    /// A unit name that is not one.
    #[error("Bad unit in the scope")]
    BadUnit(#[source] SystemdError),
    /// The hook could not be set or removed.
    #[error("Cannot set the MPTCP hook")]
    Hook(#[source] HookError),
    /// `mptcpize disable` failed while leaving the old scope.
    #[error("Cannot undo mptcpize for {unit}")]
    Undo {
        /// The unit.
        unit: String,
        /// Cause.
        #[source]
        source: SystemdError,
    },
}

/// What the guest offers (decided once, at agent start).
pub struct Env {
    /// systemd, when it is the init system.
    pub systemd: Option<Arc<dyn Systemd>>,
    /// Whether `mptcpize` is installed.
    pub mptcpize: bool,
    /// The BPF hook's availability.
    pub bpf: HookSupport,
    /// Where the cgroup2 file system is mounted.
    pub cgroup_root: PathBuf,
}

impl Env {
    /// What [`crate::info`] reports.
    pub fn support(&self) -> MptcpAppsSupport {
        MptcpAppsSupport {
            bpf: self.bpf.clone(),
            mptcpize: self.mptcpize && self.systemd.is_some(),
        }
    }
}

/// Why the hook is not available, in words.
pub fn hook_reason(h: &HookSupport) -> String {
    match h {
        HookSupport::Available => "it is available".into(),
        HookSupport::Unknown => "its availability is unknown".into(),
        HookSupport::NoBtf => "this kernel has no BTF".into(),
        HookSupport::NoHook => "this kernel has no such hook".into(),
        HookSupport::NoPermission => "the agent may not load BPF tracing programs".into(),
        HookSupport::Failed(why) => format!("it cannot be loaded ({why})"),
    }
}

/// A unit of a BPF units scope: where its cgroup is and its id now.
#[derive(Debug, Clone, Default)]
struct Tracked {
    /// The cgroup directory (absolute).
    dir: Option<PathBuf>,
    /// Its id, while it exists.
    id: Option<u64>,
}

#[derive(Default)]
struct Inner {
    scope: MptcpScope,
    mechanism: Option<MptcpMechanism>,
    pinned: bool,
    /// BPF units: where their cgroups are.
    tracked: BTreeMap<String, Tracked>,
    /// Units the agent enabled with mptcpize.
    mptcpized: BTreeSet<String>,
    /// Units set up while running: their invocation id then.
    restart_pending: BTreeMap<String, String>,
    /// Per-unit failures of the last apply (`mptcpize` errors).
    failures: BTreeMap<String, String>,
}

/// The MPTCP-for-applications manager of the agent.
pub struct Apps {
    env: Env,
    hook: Mutex<Box<dyn HookCtl>>,
    inner: Mutex<Inner>,
    requests: Mutex<()>,
    store: Arc<Store>,
}

fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Apps {
    /// A manager for `env`, driving `hook`, saving in `store`.
    pub fn new(env: Env, hook: Box<dyn HookCtl>, store: Arc<Store>) -> Self {
        Self {
            env,
            hook: Mutex::new(hook),
            inner: Mutex::new(Inner::default()),
            requests: Mutex::new(()),
            store,
        }
    }

    /// What the guest offers.
    pub fn support(&self) -> MptcpAppsSupport {
        self.env.support()
    }

    /// Re-applies the scope an earlier run of the agent saved (no
    /// restarts). `Ok(None)` when nothing was saved.
    pub fn restore(&self) -> Result<Option<MptcpAppsReport>, AppsError> {
        let saved = self.load_saved();
        if saved.scope == MptcpScope::Off && saved.mptcpized.is_empty() {
            // A hook pinned by an agent whose state is gone (or off) goes.
            lock(&self.hook).detach().map_err(AppsError::Hook)?;
            return Ok(None);
        }
        self.apply(saved.scope, false).map(Some)
    }

    /// Takes the saved scope and bookkeeping as the current ones, without
    /// applying anything (what is in force is what an earlier run left).
    fn load_saved(&self) -> crate::state::SavedApps {
        let saved = self.store.snapshot().mptcp_apps;
        let mut inner = lock(&self.inner);
        inner.mptcpized = saved.mptcpized.iter().cloned().collect();
        inner.restart_pending = saved.restart_pending.clone();
        inner.mechanism = self.mechanism_for(&saved.scope).ok().flatten();
        inner.scope = saved.scope.clone();
        saved
    }

    /// Undoes whatever an earlier run of the agent set up (the pinned hook,
    /// `mptcpize` of its units) without starting an agent: for a package's
    /// removal script, once the agent is stopped.
    pub fn reset(&self) -> Result<MptcpAppsReport, AppsError> {
        self.load_saved();
        self.apply(MptcpScope::Off, false)
    }

    /// The mechanism `scope` needs, or why it is impossible here.
    fn mechanism_for(&self, scope: &MptcpScope) -> Result<Option<MptcpMechanism>, AppsError> {
        match scope {
            MptcpScope::Off => Ok(None),
            MptcpScope::All => match &self.env.bpf {
                HookSupport::Available => Ok(Some(MptcpMechanism::Bpf)),
                other => Err(AppsError::NeedsHook(hook_reason(other))),
            },
            MptcpScope::Units(units) => {
                if units.is_empty() {
                    return Err(AppsError::EmptyUnits);
                }
                for u in units {
                    systemd::check_unit(u).map_err(AppsError::BadUnit)?;
                }
                if self.env.systemd.is_none() {
                    return Err(AppsError::NeedsSystemd);
                }
                if self.env.bpf == HookSupport::Available {
                    Ok(Some(MptcpMechanism::Bpf))
                } else if self.env.mptcpize {
                    Ok(Some(MptcpMechanism::Mptcpize))
                } else {
                    Err(AppsError::NoMechanism(hook_reason(&self.env.bpf)))
                }
            }
        }
    }

    /// Makes `scope` the scope in force (see the module docs); with
    /// `restart`, restarts the running units whose processes predate it.
    pub fn apply(&self, scope: MptcpScope, restart: bool) -> Result<MptcpAppsReport, AppsError> {
        let _serial = lock(&self.requests);
        let mechanism = self.mechanism_for(&scope)?;
        let units: Vec<String> = match &scope {
            MptcpScope::Units(u) => u.clone(),
            _ => Vec::new(),
        };
        let mut to_restart = Vec::new();
        {
            let mut inner = lock(&self.inner);
            let was_in: BTreeSet<String> = match &inner.scope {
                MptcpScope::Units(u) => u.iter().cloned().collect(),
                _ => BTreeSet::new(),
            };
            // Leave what the new scope does not keep.
            let keep_mptcpized: BTreeSet<String> = if mechanism == Some(MptcpMechanism::Mptcpize) {
                units.iter().cloned().collect()
            } else {
                BTreeSet::new()
            };
            for unit in inner.mptcpized.clone() {
                if keep_mptcpized.contains(&unit) {
                    continue;
                }
                if let Some(sd) = &self.env.systemd {
                    sd.mptcpize(&unit, false)
                        .map_err(|source| AppsError::Undo {
                            unit: unit.clone(),
                            source,
                        })?;
                    eprintln!("edgemig-guest: mptcpize disabled for {unit}");
                    if restart && sd.show(&unit).is_ok_and(|i| i.running()) {
                        to_restart.push(unit.clone());
                    }
                }
                inner.mptcpized.remove(&unit);
            }
            if mechanism != Some(MptcpMechanism::Bpf) {
                lock(&self.hook).detach().map_err(AppsError::Hook)?;
                inner.pinned = false;
            }
            inner.tracked.clear();
            inner.failures.clear();
            inner.restart_pending.retain(|u, _| units.contains(u));

            // Enter the new one.
            let infos = self.show_all(&units);
            for (unit, info) in units.iter().zip(&infos) {
                let Ok(info) = info else { continue };
                if info.running()
                    && !was_in.contains(unit)
                    && let Some(inv) = &info.invocation_id
                {
                    inner.restart_pending.insert(unit.clone(), inv.clone());
                }
            }
            match (&scope, mechanism) {
                (MptcpScope::All, _) => {
                    inner.pinned = lock(&self.hook).set(&Scope::All).map_err(AppsError::Hook)?;
                }
                (MptcpScope::Units(_), Some(MptcpMechanism::Bpf)) => {
                    for (unit, info) in units.iter().zip(&infos) {
                        let dir = info
                            .as_ref()
                            .ok()
                            .filter(|i| i.exists())
                            .and_then(|i| i.expected_cgroup(unit))
                            .map(|cg| self.cgroup_dir(&cg));
                        let id = dir.as_deref().and_then(|d| cgroup::cgroup_id(d).ok());
                        inner.tracked.insert(unit.clone(), Tracked { dir, id });
                    }
                    let scope = scope_of(&inner.tracked);
                    inner.pinned = lock(&self.hook).set(&scope).map_err(AppsError::Hook)?;
                }
                (MptcpScope::Units(_), Some(MptcpMechanism::Mptcpize)) => {
                    let sd = self.env.systemd.as_ref().ok_or(AppsError::NeedsSystemd)?;
                    for (unit, info) in units.iter().zip(&infos) {
                        match info {
                            Ok(i) if !i.exists() => {}
                            Ok(i) if i.preloaded => {}
                            Ok(_) => match sd.mptcpize(unit, true) {
                                Ok(()) => {
                                    eprintln!("edgemig-guest: mptcpize enabled for {unit}");
                                    inner.mptcpized.insert(unit.clone());
                                }
                                Err(e) => {
                                    inner
                                        .failures
                                        .insert(unit.clone(), crate::handler::error_chain(&e));
                                }
                            },
                            Err(_) => {}
                        }
                    }
                }
                _ => {}
            }
            inner.scope = scope.clone();
            inner.mechanism = mechanism;
            if restart {
                to_restart.extend(inner.restart_pending.keys().cloned());
            }
            self.save(&inner);
        }
        if let Some(sd) = &self.env.systemd {
            for unit in &to_restart {
                eprintln!("edgemig-guest: restarting {unit} for MPTCP");
                if let Err(e) = sd.restart(unit) {
                    lock(&self.inner).failures.insert(
                        unit.clone(),
                        format!("restart: {}", crate::handler::error_chain(&e)),
                    );
                }
            }
        }
        if !to_restart.is_empty() {
            // The restarted units' new cgroups, at once (the watcher would
            // see them within a second anyway).
            self.refresh();
        }
        Ok(self.report())
    }

    /// `systemctl show` of each unit.
    fn show_all(&self, units: &[String]) -> Vec<Result<UnitInfo, SystemdError>> {
        units
            .iter()
            .map(|u| match &self.env.systemd {
                Some(sd) => sd.show(u),
                None => Err(SystemdError::BadUnit(u.clone())),
            })
            .collect()
    }

    fn cgroup_dir(&self, cg: &str) -> PathBuf {
        self.env.cgroup_root.join(cg.trim_start_matches('/'))
    }

    fn save(&self, inner: &Inner) {
        let scope = inner.scope.clone();
        let mptcpized = inner.mptcpized.iter().cloned().collect();
        let pending = inner.restart_pending.clone();
        self.store.update(|s| {
            s.mptcp_apps.scope = scope;
            s.mptcp_apps.mptcpized = mptcpized;
            s.mptcp_apps.restart_pending = pending;
        });
    }

    /// Re-reads the tracked units' cgroup ids and rewrites the hook's scope
    /// if one changed (a unit restarted, started or stopped). Returns the
    /// directories whose parents are worth watching.
    pub fn refresh(&self) -> Vec<PathBuf> {
        let mut inner = lock(&self.inner);
        if inner.mechanism != Some(MptcpMechanism::Bpf) || inner.tracked.is_empty() {
            return Vec::new();
        }
        let mut changed = false;
        for (unit, t) in inner.tracked.iter_mut() {
            let id = t.dir.as_deref().and_then(|d| cgroup::cgroup_id(d).ok());
            if id != t.id {
                eprintln!(
                    "edgemig-guest: cgroup of {unit}: {} -> {}",
                    t.id.map_or("none".into(), |i| i.to_string()),
                    id.map_or("none".into(), |i| i.to_string())
                );
                t.id = id;
                changed = true;
            }
        }
        if changed {
            let scope = scope_of(&inner.tracked);
            match lock(&self.hook).set(&scope) {
                Ok(pinned) => inner.pinned = pinned,
                Err(e) => eprintln!(
                    "edgemig-guest: cannot update the MPTCP hook: {}",
                    crate::handler::error_chain(&e)
                ),
            }
        }
        inner
            .tracked
            .values()
            .filter_map(|t| t.dir.clone())
            .collect()
    }

    /// The scope in force and where each unit stands.
    pub fn report(&self) -> MptcpAppsReport {
        let (scope, mechanism, pinned, tracked, pending, failures) = {
            let inner = lock(&self.inner);
            (
                inner.scope.clone(),
                inner.mechanism,
                inner.pinned,
                inner.tracked.clone(),
                inner.restart_pending.clone(),
                inner.failures.clone(),
            )
        };
        let units = match &scope {
            MptcpScope::Units(u) => u.clone(),
            _ => Vec::new(),
        };
        let infos = self.show_all(&units);
        // Units restarted since they entered the scope need no restart.
        let restarted: Vec<String> = units
            .iter()
            .zip(&infos)
            .filter_map(|(unit, info)| {
                let then = pending.get(unit)?;
                let now = info.as_ref().ok()?.invocation_id.as_ref();
                (now != Some(then)).then(|| unit.clone())
            })
            .collect();
        if !restarted.is_empty() {
            let mut inner = lock(&self.inner);
            for u in &restarted {
                inner.restart_pending.remove(u);
            }
            self.save(&inner);
        }
        let units = units
            .iter()
            .zip(infos)
            .map(|(unit, info)| {
                let t = tracked.get(unit);
                let state = unit_state(unit, info, mechanism, t, &pending, &failures);
                let cgroup = match (mechanism, t) {
                    (Some(MptcpMechanism::Bpf), Some(t)) if t.id.is_some() => t
                        .dir
                        .as_deref()
                        .and_then(|d| d.strip_prefix(&self.env.cgroup_root).ok())
                        .map(|p| format!("/{}", p.display())),
                    _ => None,
                };
                UnitReport {
                    unit: unit.clone(),
                    state,
                    cgroup,
                }
            })
            .collect();
        MptcpAppsReport {
            scope,
            mechanism,
            pinned,
            units,
        }
    }
}

/// The hook scope of the tracked units: the ids of those whose cgroup
/// exists.
fn scope_of(tracked: &BTreeMap<String, Tracked>) -> Scope {
    Scope::Cgroups(tracked.values().filter_map(|t| t.id).collect())
}

/// Where one unit stands.
fn unit_state(
    unit: &str,
    info: Result<UnitInfo, SystemdError>,
    mechanism: Option<MptcpMechanism>,
    tracked: Option<&Tracked>,
    pending: &BTreeMap<String, String>,
    failures: &BTreeMap<String, String>,
) -> UnitState {
    if let Some(f) = failures.get(unit) {
        return UnitState::Failed(f.clone());
    }
    let info = match info {
        Ok(i) => i,
        Err(e) => return UnitState::Failed(crate::handler::error_chain(&e)),
    };
    if !info.exists() {
        return UnitState::Failed("no such unit".into());
    }
    if mechanism == Some(MptcpMechanism::Mptcpize) && !info.preloaded {
        return UnitState::Failed("mptcpize did not take effect".into());
    }
    if !info.running() {
        return UnitState::Inactive;
    }
    if mechanism == Some(MptcpMechanism::Bpf) && tracked.is_none_or(|t| t.id.is_none()) {
        let dir = tracked
            .and_then(|t| t.dir.as_deref())
            .map_or_else(|| "unknown".to_string(), |d| d.display().to_string());
        return UnitState::Failed(format!("its cgroup ({dir}) is not there"));
    }
    match (pending.get(unit), &info.invocation_id) {
        (Some(then), Some(now)) if then == now => UnitState::RestartNeeded,
        _ => UnitState::Active,
    }
}

/// The cgroup2 mount of this guest (`/sys/fs/cgroup` when unknown).
pub fn cgroup_root() -> PathBuf {
    cgroup::cgroup2_mount().unwrap_or_else(|_| Path::new("/sys/fs/cgroup").to_path_buf())
}
