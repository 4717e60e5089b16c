//! [`DirectoryConfig`]: which directory backend an agent uses, as read from
//! its configuration file.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::directory::Directory;
use crate::embedded::EmbeddedDirectory;
use crate::error::DirectoryError;
use crate::etcd::EtcdDirectory;

/// The directory backend, tagged by `backend`. In TOML:
///
/// ```toml
/// [directory]
/// backend = "embedded"
/// path = "/run/edgemig/directory"
/// ```
///
/// or
///
/// ```toml
/// [directory]
/// backend = "etcd"
/// endpoints = ["http://10.0.0.1:2379"]
/// prefix = "/edgemig"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "backend", rename_all = "snake_case", deny_unknown_fields)]
pub enum DirectoryConfig {
    /// JSON files under one directory shared by every agent of this machine
    /// (the testbed). Single machine only.
    Embedded {
        /// Root directory of the records; created when missing. Every agent
        /// of the machine must use the same path.
        path: PathBuf,
    },
    /// An etcd v3 cluster over plain HTTP (no TLS, no authentication).
    Etcd {
        /// Client URLs of the cluster members, e.g. `http://10.0.0.1:2379`.
        endpoints: Vec<String>,
        /// Key prefix of every record, e.g. `/edgemig`; lets several
        /// deployments share one cluster.
        prefix: String,
    },
}

impl DirectoryConfig {
    /// Opens the configured directory. For etcd the connection is lazy:
    /// this succeeds while the cluster is down; use [`Directory::health`].
    ///
    /// # Errors
    /// The embedded root cannot be created, or invalid etcd endpoints.
    pub async fn connect(&self) -> Result<Directory, DirectoryError> {
        match self {
            Self::Embedded { path } => Ok(EmbeddedDirectory::open(path.clone())?.into()),
            Self::Etcd { endpoints, prefix } => {
                Ok(EtcdDirectory::connect(endpoints, prefix).await?.into())
            }
        }
    }
}
