//! MPTCP for applications (`MptcpApps`) with a fake systemd and a fake
//! hook, against real cgroup v2 directories (root needed): which cgroups
//! reach the hook, how units' states are reported, restarts (by the agent
//! and by someone else, followed by the cgroup watcher), mptcpize when
//! there is no hook, refusals, and restoring after an agent restart. The
//! real hook is exercised in a VM by `edgemig-mptcpify`'s `in_vm` test and
//! by this crate's `in_vm` test.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::is_root;
use edgemig_guest::apps::hook::HookCtl;
use edgemig_guest::apps::systemd::{Systemd, SystemdError, UnitInfo};
use edgemig_guest::apps::{Apps, AppsError, Env, watch};
use edgemig_guest::state::Store;
use edgemig_guest_proto::mptcp_apps::{HookSupport, MptcpMechanism, MptcpScope, UnitState};
use edgemig_mptcpify::{HookError, Scope, cgroup};

/// Upper bound for the watcher to notice a restart (it takes
/// milliseconds; the bound only keeps a broken kernel from hanging).
const DEADLINE: Duration = Duration::from_secs(30);

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A cgroup directory tree of its own under the cgroup2 mount, removed
/// (deepest first) on drop.
struct CgroupTree(PathBuf);

impl CgroupTree {
    fn new() -> Self {
        let root = cgroup::cgroup2_mount().expect("cgroup2 mounted");
        let dir = root.join(format!(
            "emapps{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&dir).unwrap();
        std::fs::create_dir(dir.join("system.slice")).unwrap();
        Self(dir)
    }
}

impl Drop for CgroupTree {
    fn drop(&mut self) {
        fn remove(dir: &Path) {
            if let Ok(entries) = std::fs::read_dir(dir) {
                for e in entries.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        remove(&e.path());
                    }
                }
            }
            let _ = std::fs::remove_dir(dir);
        }
        remove(&self.0);
    }
}

/// A unit of the fake systemd.
#[derive(Clone)]
struct FakeUnit {
    running: bool,
    invocation: u32,
    preloaded: bool,
}

/// systemd as the tests want it: units in `system.slice` of `root`; a
/// running unit has its cgroup directory, a restart makes a new one.
struct FakeSystemd {
    root: PathBuf,
    units: Mutex<BTreeMap<String, FakeUnit>>,
    calls: Mutex<Vec<String>>,
}

impl FakeSystemd {
    fn new(root: &Path) -> Arc<Self> {
        Arc::new(Self {
            root: root.to_path_buf(),
            units: Mutex::new(BTreeMap::new()),
            calls: Mutex::new(Vec::new()),
        })
    }

    fn dir(&self, unit: &str) -> PathBuf {
        self.root.join("system.slice").join(unit)
    }

    fn add(&self, unit: &str, running: bool) {
        if running {
            std::fs::create_dir(self.dir(unit)).unwrap();
        }
        self.units.lock().unwrap().insert(
            unit.into(),
            FakeUnit {
                running,
                invocation: 1,
                preloaded: false,
            },
        );
    }

    /// What systemd does on a restart: a new cgroup, a new invocation.
    fn bounce(&self, unit: &str) {
        let _ = std::fs::remove_dir(self.dir(unit));
        std::fs::create_dir(self.dir(unit)).unwrap();
        let mut units = self.units.lock().unwrap();
        let u = units.get_mut(unit).unwrap();
        u.running = true;
        u.invocation += 1;
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

impl Systemd for FakeSystemd {
    fn show(&self, unit: &str) -> Result<UnitInfo, SystemdError> {
        let units = self.units.lock().unwrap();
        let Some(u) = units.get(unit) else {
            return Ok(UnitInfo {
                load_state: "not-found".into(),
                active_state: "inactive".into(),
                ..UnitInfo::default()
            });
        };
        Ok(UnitInfo {
            load_state: "loaded".into(),
            active_state: if u.running { "active" } else { "inactive" }.into(),
            control_group: u.running.then(|| format!("/system.slice/{unit}")),
            slice: Some("system.slice".into()),
            invocation_id: u.running.then(|| format!("inv{}", u.invocation)),
            preloaded: u.preloaded,
        })
    }

    fn restart(&self, unit: &str) -> Result<(), SystemdError> {
        self.calls.lock().unwrap().push(format!("restart {unit}"));
        self.bounce(unit);
        Ok(())
    }

    fn mptcpize(&self, unit: &str, enable: bool) -> Result<(), SystemdError> {
        let verb = if enable { "enable" } else { "disable" };
        self.calls
            .lock()
            .unwrap()
            .push(format!("mptcpize {verb} {unit}"));
        let mut units = self.units.lock().unwrap();
        let u = units.get_mut(unit).ok_or_else(|| SystemdError::Failed {
            cmd: format!("mptcpize {verb} {unit}"),
            stderr: "can't find unit file".into(),
        })?;
        u.preloaded = enable;
        Ok(())
    }
}

/// The hook as the tests see it: the last scope, or `None` when detached.
#[derive(Clone, Default)]
struct FakeHook(Arc<Mutex<Option<Scope>>>);

impl FakeHook {
    fn scope(&self) -> Option<Scope> {
        self.0.lock().unwrap().clone()
    }
}

impl HookCtl for FakeHook {
    fn set(&mut self, scope: &Scope) -> Result<bool, HookError> {
        *self.0.lock().unwrap() = Some(scope.clone());
        Ok(true)
    }

    fn detach(&mut self) -> Result<(), HookError> {
        *self.0.lock().unwrap() = None;
        Ok(())
    }
}

/// An `Apps` over the fakes; the test's tree stands for the cgroup root.
fn apps(
    sd: &Arc<FakeSystemd>,
    bpf: HookSupport,
    mptcpize: bool,
    store: Arc<Store>,
) -> (Arc<Apps>, FakeHook) {
    let hook = FakeHook::default();
    let env = Env {
        systemd: Some(Arc::clone(sd) as Arc<dyn Systemd>),
        mptcpize,
        bpf,
        cgroup_root: sd.root.clone(),
    };
    (
        Arc::new(Apps::new(env, Box::new(hook.clone()), store)),
        hook,
    )
}

fn ids(scope: Option<Scope>) -> BTreeSet<u64> {
    match scope {
        Some(Scope::Cgroups(ids)) => ids,
        other => panic!("expected a cgroups scope: {other:?}"),
    }
}

fn units(list: &[&str]) -> MptcpScope {
    MptcpScope::Units(list.iter().map(|s| s.to_string()).collect())
}

fn states(r: &edgemig_guest_proto::mptcp_apps::MptcpAppsReport) -> Vec<(String, UnitState)> {
    r.units
        .iter()
        .map(|u| (u.unit.clone(), u.state.clone()))
        .collect()
}

#[test]
fn bpf_units_follow_their_cgroups() {
    if !is_root() {
        return;
    }
    let tree = CgroupTree::new();
    let sd = FakeSystemd::new(&tree.0);
    sd.add("web.service", true);
    sd.add("idle.service", false);
    let store = Arc::new(Store::ephemeral());
    let (apps, hook) = apps(&sd, HookSupport::Available, true, Arc::clone(&store));

    let scope = units(&["web.service", "idle.service", "nope.service"]);
    let r = apps.apply(scope.clone(), false).unwrap();
    assert_eq!(r.mechanism, Some(MptcpMechanism::Bpf));
    assert!(r.pinned);
    let web = cgroup::cgroup_id(&sd.dir("web.service")).unwrap();
    assert_eq!(ids(hook.scope()), BTreeSet::from([web]));
    assert_eq!(
        states(&r),
        [
            ("web.service".into(), UnitState::RestartNeeded),
            ("idle.service".into(), UnitState::Inactive),
            (
                "nope.service".into(),
                UnitState::Failed("no such unit".into())
            ),
        ]
    );
    assert_eq!(
        r.units[0].cgroup.as_deref(),
        Some("/system.slice/web.service")
    );
    assert!(sd.calls().is_empty(), "no restart without restart: true");

    // Applying the same scope again marks nothing new.
    let again = apps.apply(scope.clone(), false).unwrap();
    assert_eq!(again.units[0].state, UnitState::RestartNeeded);

    // The agent restarts what needs it: new cgroup, new id, Active.
    let r = apps.apply(scope.clone(), true).unwrap();
    assert_eq!(sd.calls(), ["restart web.service"]);
    let web2 = cgroup::cgroup_id(&sd.dir("web.service")).unwrap();
    assert_ne!(web, web2);
    assert_eq!(ids(hook.scope()), BTreeSet::from([web2]));
    assert_eq!(r.units[0].state, UnitState::Active);

    // Someone else restarts it, and the idle unit starts: the watcher
    // follows both cgroups.
    let watcher = watch::spawn(Arc::clone(&apps)).unwrap();
    sd.bounce("web.service");
    sd.bounce("idle.service");
    let web3 = cgroup::cgroup_id(&sd.dir("web.service")).unwrap();
    let idle = cgroup::cgroup_id(&sd.dir("idle.service")).unwrap();
    let t0 = Instant::now();
    while ids(hook.scope()) != BTreeSet::from([web3, idle]) {
        assert!(t0.elapsed() < DEADLINE, "watcher: {:?}", hook.scope());
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!("the watcher followed two restarts in {:?}", t0.elapsed());
    let r = apps.report();
    assert_eq!(r.units[0].state, UnitState::Active);
    // It started after entering the scope: nothing predates the hook.
    assert_eq!(r.units[1].state, UnitState::Active);
    // A stopped unit leaves the hook's scope.
    std::fs::remove_dir(sd.dir("idle.service")).unwrap();
    sd.units
        .lock()
        .unwrap()
        .get_mut("idle.service")
        .unwrap()
        .running = false;
    let t0 = Instant::now();
    while ids(hook.scope()) != BTreeSet::from([web3]) {
        assert!(t0.elapsed() < DEADLINE, "watcher: {:?}", hook.scope());
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(watcher);

    // Off detaches.
    let r = apps.apply(MptcpScope::Off, false).unwrap();
    assert_eq!(r.mechanism, None);
    assert!(r.units.is_empty());
    assert_eq!(hook.scope(), None);
    // All, with the hook.
    let r = apps.apply(MptcpScope::All, false).unwrap();
    assert_eq!(hook.scope(), Some(Scope::All));
    assert_eq!(r.scope, MptcpScope::All);
    assert_eq!(store.snapshot().mptcp_apps.scope, MptcpScope::All);
}

#[test]
fn impossible_scopes_are_refused_and_change_nothing() {
    if !is_root() {
        return;
    }
    let tree = CgroupTree::new();
    let sd = FakeSystemd::new(&tree.0);
    sd.add("web.service", true);
    let (apps, hook) = apps(
        &sd,
        HookSupport::NoHook,
        false,
        Arc::new(Store::ephemeral()),
    );
    let err = apps.apply(MptcpScope::All, false).unwrap_err();
    assert!(matches!(err, AppsError::NeedsHook(_)), "{err}");
    assert!(err.to_string().contains("update_socket_protocol"), "{err}");
    let err = apps.apply(units(&["web.service"]), false).unwrap_err();
    assert!(matches!(err, AppsError::NoMechanism(_)), "{err}");
    assert!(matches!(
        apps.apply(MptcpScope::Units(vec![]), false),
        Err(AppsError::EmptyUnits)
    ));
    assert!(matches!(
        apps.apply(units(&["--all"]), false),
        Err(AppsError::BadUnit(_))
    ));
    assert_eq!(apps.report().scope, MptcpScope::Off);
    assert_eq!(hook.scope(), None);
    assert!(sd.calls().is_empty());

    // No systemd at all: units are impossible even with the hook.
    let env = Env {
        systemd: None,
        mptcpize: true,
        bpf: HookSupport::Available,
        cgroup_root: tree.0.clone(),
    };
    let bare = Apps::new(
        env,
        Box::new(FakeHook::default()),
        Arc::new(Store::ephemeral()),
    );
    assert!(matches!(
        bare.apply(units(&["web.service"]), false),
        Err(AppsError::NeedsSystemd)
    ));
}

#[test]
fn mptcpize_without_the_hook_and_after_an_agent_restart() {
    if !is_root() {
        return;
    }
    let tree = CgroupTree::new();
    let sd = FakeSystemd::new(&tree.0);
    sd.add("web.service", true);
    sd.add("db.service", false);
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path());
    let (apps1, hook) = apps(&sd, HookSupport::NoHook, true, Arc::new(store));

    let r = apps1
        .apply(units(&["web.service", "db.service", "gone.service"]), false)
        .unwrap();
    assert_eq!(r.mechanism, Some(MptcpMechanism::Mptcpize));
    assert!(!r.pinned);
    assert_eq!(
        states(&r),
        [
            ("web.service".into(), UnitState::RestartNeeded),
            ("db.service".into(), UnitState::Inactive),
            (
                "gone.service".into(),
                UnitState::Failed("no such unit".into())
            ),
        ]
    );
    assert_eq!(
        sd.calls(),
        ["mptcpize enable web.service", "mptcpize enable db.service"]
    );
    assert_eq!(hook.scope(), None, "no hook with mptcpize");

    // The agent restarts: a new Apps over the same state directory takes
    // the scope back without restarting or re-enabling anything.
    drop(apps1);
    let (store, loaded) = Store::open(dir.path());
    assert!(matches!(loaded, edgemig_guest::state::Loaded::Restored));
    let (apps2, _) = apps(&sd, HookSupport::NoHook, true, Arc::new(store));
    let r = apps2.restore().unwrap().expect("a saved scope");
    assert_eq!(
        r.units[0].state,
        UnitState::RestartNeeded,
        "still the old processes"
    );
    assert_eq!(sd.calls().len(), 2, "{:?}", sd.calls());

    // Narrowing undoes mptcpize for the unit that leaves.
    let r = apps2.apply(units(&["web.service"]), true).unwrap();
    assert_eq!(
        sd.calls()[2..],
        ["mptcpize disable db.service", "restart web.service"]
    );
    assert_eq!(states(&r), [("web.service".into(), UnitState::Active)]);
    // Off undoes it for the rest, and restarts the unit when asked.
    let r = apps2.apply(MptcpScope::Off, true).unwrap();
    assert_eq!(r.scope, MptcpScope::Off);
    assert_eq!(
        sd.calls()[4..],
        ["mptcpize disable web.service", "restart web.service"]
    );
    let saved = Store::open(dir.path()).0.snapshot().mptcp_apps;
    assert_eq!(saved.scope, MptcpScope::Off);
    assert!(saved.mptcpized.is_empty() && saved.restart_pending.is_empty());
}
