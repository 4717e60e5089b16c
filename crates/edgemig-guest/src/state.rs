//! What the agent remembers across its own restarts: what the host told
//! it — the staged NIC plans, the NIC configuration it applied, the MPTCP
//! scope for applications — kept in `<state dir>/state.json` (default
//! [`DEFAULT_STATE_DIR`], a tmpfs: it survives agent restarts, not
//! reboots; a migration keeps it, since guest memory migrates).
//!
//! Every change rewrites the whole file (a temporary file renamed over
//! it, so a crash leaves the old or the new file, never half of one). A
//! file that cannot be read or parsed, or of another [`STATE_VERSION`], is
//! set aside as `state.json.bad` and the agent starts afresh.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use edgemig_guest_proto::mptcp_apps::MptcpScope;
use edgemig_guest_proto::{MacAddr, NicPlanState, NicReport};
use serde::{Deserialize, Serialize};

/// Where the agent keeps its state by default.
pub const DEFAULT_STATE_DIR: &str = "/run/edgemig-guest";
/// Version of the file's layout.
pub const STATE_VERSION: u32 = 1;
const FILE: &str = "state.json";

/// A staged NIC plan, as saved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedPlan {
    /// Interface (the real name, resolved at staging).
    pub nic: String,
    /// Its MAC, when the plan named it by MAC.
    pub mac: Option<MacAddr>,
    /// Planned address with prefix.
    pub address: String,
    /// Planned gateway.
    pub gateway: String,
    /// Where the plan stands.
    pub state: NicPlanState,
    /// Staged at (guest uptime, ms).
    pub staged_ms: u64,
    /// Applied (or failed) at.
    pub applied_ms: Option<u64>,
    /// What applying did.
    pub report: Option<NicReport>,
}

/// A NIC configuration the agent applied (NicUp, or a plan), as saved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedNic {
    /// Interface (real name).
    pub nic: String,
    /// Its MAC.
    pub mac: Option<MacAddr>,
    /// Address with prefix.
    pub address: String,
    /// Gateway.
    pub gateway: String,
}

/// The MPTCP-for-applications state, as saved.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedApps {
    /// The scope the host asked for.
    pub scope: MptcpScope,
    /// Units the agent enabled with `mptcpize` (and so must disable).
    #[serde(default)]
    pub mptcpized: Vec<String>,
    /// Units set up while running, by the invocation id they had then:
    /// they need a restart until their invocation id changes.
    #[serde(default)]
    pub restart_pending: BTreeMap<String, String>,
}

/// Everything saved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    /// [`STATE_VERSION`].
    pub version: u32,
    /// Staged plans, by interface.
    #[serde(default)]
    pub plans: Vec<SavedPlan>,
    /// Applied NIC configurations, in the order applied (the last one's
    /// gateway holds the main default route).
    #[serde(default)]
    pub nics: Vec<SavedNic>,
    /// MPTCP for applications.
    #[serde(default)]
    pub mptcp_apps: SavedApps,
}

impl Default for Saved {
    fn default() -> Self {
        Self {
            version: STATE_VERSION,
            plans: Vec::new(),
            nics: Vec::new(),
            mptcp_apps: SavedApps::default(),
        }
    }
}

impl Saved {
    /// Records an applied configuration of `nic` (replacing an earlier one
    /// of the same interface, and moving it last).
    pub fn nic_applied(&mut self, nic: SavedNic) {
        self.nics.retain(|n| n.nic != nic.nic);
        self.nics.push(nic);
    }

    /// Forgets `nic`'s configuration (it was retired).
    pub fn nic_retired(&mut self, nic: &str) {
        self.nics.retain(|n| n.nic != nic);
    }
}

/// Errors of the state file (logged; the agent goes on without it).
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading, writing or renaming failed.
    #[error("State file {path}: {op} failed")]
    Io {
        /// What was attempted.
        op: &'static str,
        /// File.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a state file of this version.
    #[error("State file {path} is unusable")]
    Parse {
        /// File.
        path: String,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
    /// The file is of another layout version.
    #[error("State file {path} has version {found}, this agent reads {STATE_VERSION}")]
    Version {
        /// File.
        path: String,
        /// Its version.
        found: u32,
    },
}

/// How opening the store went.
#[derive(Debug)]
pub enum Loaded {
    /// No file: a fresh start (first start since boot).
    Fresh,
    /// The file was read: the agent restarted.
    Restored,
    /// The file was unusable (set aside); a fresh start.
    Discarded(StateError),
}

/// The saved state and its file.
#[derive(Debug)]
pub struct Store {
    file: Option<PathBuf>,
    saved: Mutex<Saved>,
}

fn lock(m: &Mutex<Saved>) -> MutexGuard<'_, Saved> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Store {
    /// A store that keeps nothing on disk (tests, or no usable directory).
    pub fn ephemeral() -> Self {
        Self {
            file: None,
            saved: Mutex::new(Saved::default()),
        }
    }

    /// Opens the store in `dir` (created if missing), loading what an
    /// earlier run saved.
    pub fn open(dir: &Path) -> (Self, Loaded) {
        let file = dir.join(FILE);
        if let Err(source) = std::fs::create_dir_all(dir) {
            let e = StateError::Io {
                op: "create directory",
                path: dir.display().to_string(),
                source,
            };
            return (Self::ephemeral(), Loaded::Discarded(e));
        }
        let (saved, loaded) = match load(&file) {
            Ok(Some(saved)) => (saved, Loaded::Restored),
            Ok(None) => (Saved::default(), Loaded::Fresh),
            Err(e) => {
                let _ = std::fs::rename(&file, dir.join(format!("{FILE}.bad")));
                (Saved::default(), Loaded::Discarded(e))
            }
        };
        (
            Self {
                file: Some(file),
                saved: Mutex::new(saved),
            },
            loaded,
        )
    }

    /// The file, when there is one.
    pub fn path(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// A copy of what is saved.
    pub fn snapshot(&self) -> Saved {
        lock(&self.saved).clone()
    }

    /// Changes the state and writes the file; a write failure is logged
    /// (the change stays in memory).
    pub fn update(&self, f: impl FnOnce(&mut Saved)) {
        let mut saved = lock(&self.saved);
        f(&mut saved);
        if let Some(file) = &self.file
            && let Err(e) = write(file, &saved)
        {
            eprintln!("edgemig-guest: {}", crate::handler::error_chain(&e));
        }
    }
}

fn load(file: &Path) -> Result<Option<Saved>, StateError> {
    let path = || file.display().to_string();
    let text = match std::fs::read(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StateError::Io {
                op: "read",
                path: path(),
                source,
            });
        }
    };
    #[derive(Deserialize)]
    struct VersionOnly {
        version: u32,
    }
    let v: VersionOnly = serde_json::from_slice(&text).map_err(|source| StateError::Parse {
        path: path(),
        source,
    })?;
    if v.version != STATE_VERSION {
        return Err(StateError::Version {
            path: path(),
            found: v.version,
        });
    }
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|source| StateError::Parse {
            path: path(),
            source,
        })
}

fn write(file: &Path, saved: &Saved) -> Result<(), StateError> {
    let io = |op, source| StateError::Io {
        op,
        path: file.display().to_string(),
        source,
    };
    let mut text = serde_json::to_vec_pretty(saved).map_err(|e| io("encode", e.into()))?;
    text.push(b'\n');
    let tmp = file.with_extension("json.tmp");
    std::fs::write(&tmp, &text).map_err(|e| io("write", e))?;
    std::fs::rename(&tmp, file).map_err(|e| io("rename", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_a_reopen_and_sets_bad_files_aside() {
        let dir = tempfile::tempdir().unwrap();
        let (store, loaded) = Store::open(dir.path());
        assert!(matches!(loaded, Loaded::Fresh));
        store.update(|s| {
            s.nic_applied(SavedNic {
                nic: "ens4".into(),
                mac: Some("52:54:01:00:00:07".parse().unwrap()),
                address: "10.20.0.5/24".into(),
                gateway: "10.20.0.1".into(),
            });
            s.mptcp_apps.scope = MptcpScope::Units(vec!["nginx.service".into()]);
        });
        let before = store.snapshot();
        drop(store);
        let (again, loaded) = Store::open(dir.path());
        assert!(matches!(loaded, Loaded::Restored));
        assert_eq!(again.snapshot(), before);
        again.update(|s| s.nic_retired("ens4"));
        assert!(again.snapshot().nics.is_empty());

        std::fs::write(dir.path().join(FILE), b"{ not json").unwrap();
        let (fresh, loaded) = Store::open(dir.path());
        assert!(matches!(
            loaded,
            Loaded::Discarded(StateError::Parse { .. })
        ));
        assert_eq!(fresh.snapshot(), Saved::default());
        assert!(dir.path().join("state.json.bad").exists());
        std::fs::write(dir.path().join(FILE), br#"{"version": 99}"#).unwrap();
        let (_, loaded) = Store::open(dir.path());
        assert!(matches!(
            loaded,
            Loaded::Discarded(StateError::Version { found: 99, .. })
        ));
    }

    #[test]
    fn applied_nics_keep_their_order_of_application() {
        let mut s = Saved::default();
        let nic = |n: &str, a: &str| SavedNic {
            nic: n.into(),
            mac: None,
            address: a.into(),
            gateway: "10.0.0.1".into(),
        };
        s.nic_applied(nic("eth0", "10.10.0.2/24"));
        s.nic_applied(nic("eth1", "10.20.0.2/24"));
        s.nic_applied(nic("eth0", "10.10.0.2/24"));
        let order: Vec<&str> = s.nics.iter().map(|n| n.nic.as_str()).collect();
        assert_eq!(order, ["eth1", "eth0"]);
    }
}
