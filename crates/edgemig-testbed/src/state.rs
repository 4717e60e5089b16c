//! The state file of a running testbed: what it created and where each part
//! is. `up` writes it as it goes, so `down` can undo a half-built testbed;
//! the other commands read it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Errors reading or writing the state.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// No testbed of that name.
    #[error("No testbed named {0:?} is up (no state in {1})")]
    NotFound(String, PathBuf),
    /// File system error.
    #[error("Cannot {what} {path}")]
    Io {
        /// What was attempted.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not readable state.
    #[error("Testbed state {0} is damaged")]
    Damaged(PathBuf, #[source] serde_json::Error),
}

/// A process the testbed started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRecord {
    /// What it is: `linkemu:path1`, `edgemigd:site-a`, ...
    pub role: String,
    /// Its pid.
    pub pid: u32,
}

/// A site of the running testbed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteState {
    /// Site name.
    pub name: String,
    /// Namespace.
    pub netns: String,
    /// API socket of its `edgemigd`.
    pub api_socket: PathBuf,
    /// Its config file.
    pub config: PathBuf,
    /// Its log.
    pub log: PathBuf,
    /// VM subnet.
    pub vm_subnet: String,
    /// Addresses of its path interfaces, in path order.
    pub path_addrs: Vec<String>,
}

/// An emulated link of the running testbed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkState {
    /// `path1`, ... or `<client>-<site>`.
    pub name: String,
    /// `path` or `access`.
    pub kind: String,
    /// Node and address of each end (`site-a 172.31.1.1/24`).
    pub ends: [String; 2],
    /// Control socket of its emulator.
    pub control: PathBuf,
    /// Configured rate (as written).
    pub rate: String,
    /// Configured one-way delay (as written).
    pub delay: String,
}

/// Everything `down`, `status`, `link` and `exec` need.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TestbedState {
    /// Testbed name.
    pub name: String,
    /// Its directory.
    pub dir: PathBuf,
    /// Namespaces created, by node name.
    pub namespaces: Vec<(String, String)>,
    /// Processes started.
    pub processes: Vec<ProcessRecord>,
    /// Sites.
    pub sites: Vec<SiteState>,
    /// Links.
    pub links: Vec<LinkState>,
    /// Whether `up` finished.
    pub complete: bool,
}

/// Directory holding every testbed's directory (`$EDGEMIG_TESTBED_DIR`, or
/// `/var/lib/edgemig/testbeds`).
pub fn testbeds_root() -> PathBuf {
    std::env::var_os("EDGEMIG_TESTBED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/edgemig/testbeds"))
}

/// Directory of testbed `name`.
pub fn testbed_dir(name: &str) -> PathBuf {
    testbeds_root().join(name)
}

impl TestbedState {
    /// Path of the state file in `dir`.
    pub fn file(dir: &Path) -> PathBuf {
        dir.join("state.json")
    }

    /// Reads the state of testbed `name`.
    pub fn load(name: &str) -> Result<Self, StateError> {
        let dir = testbed_dir(name);
        let path = Self::file(&dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StateError::NotFound(name.to_string(), dir));
            }
            Err(source) => {
                return Err(StateError::Io {
                    what: "read",
                    path,
                    source,
                });
            }
        };
        serde_json::from_str(&text).map_err(|e| StateError::Damaged(path, e))
    }

    /// Writes the state atomically.
    pub fn save(&self) -> Result<(), StateError> {
        let path = Self::file(&self.dir);
        let tmp = path.with_extension("json.tmp");
        let text =
            serde_json::to_string_pretty(self).map_err(|e| StateError::Damaged(path.clone(), e))?;
        std::fs::write(&tmp, text).map_err(|source| StateError::Io {
            what: "write",
            path: tmp.clone(),
            source,
        })?;
        std::fs::rename(&tmp, &path).map_err(|source| StateError::Io {
            what: "replace",
            path,
            source,
        })
    }

    /// Namespace of node `node`.
    pub fn netns_of(&self, node: &str) -> Option<&str> {
        self.namespaces
            .iter()
            .find(|(n, _)| n == node)
            .map(|(_, ns)| ns.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let state = TestbedState {
            name: "t".into(),
            dir: dir.path().to_path_buf(),
            namespaces: vec![("site-a".into(), "t-site-a".into())],
            processes: vec![ProcessRecord {
                role: "edgemigd:site-a".into(),
                pid: 42,
            }],
            ..Default::default()
        };
        state.save().unwrap();
        let text = std::fs::read_to_string(TestbedState::file(dir.path())).unwrap();
        let back: TestbedState = serde_json::from_str(&text).unwrap();
        assert_eq!(back, state);
        assert_eq!(back.netns_of("site-a"), Some("t-site-a"));
    }
}
