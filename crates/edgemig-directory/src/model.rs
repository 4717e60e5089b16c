//! The records kept in a directory: sites, leases, and name rules.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::DirectoryError;

/// Longest accepted site, VM or holder name.
pub const MAX_NAME_LEN: usize = 128;

/// One edge site and how to reach its agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteEntry {
    /// Site name (unique in the directory).
    pub name: String,
    /// `host:port` of the site's peer API.
    pub peer_addr: String,
    /// Local control socket of the agent, when it is on this machine.
    pub api_socket: Option<PathBuf>,
    /// Wall-clock time of the last registration, ms since the Unix epoch.
    /// The directory does not expire sites: callers judge staleness.
    pub updated_ms: u64,
}

/// A lease on one VM: while it is current, its holder alone may act on the VM.
///
/// Obtained from `acquire`; checked by `check_lease` and the guarded
/// operations, which fail with [`DirectoryError::LeaseLost`] once it expired,
/// was released or was taken over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub(crate) vm: String,
    pub(crate) holder: String,
    pub(crate) ttl: Duration,
    pub(crate) fence: Fence,
}

/// What identifies one acquisition of a lease, per backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fence {
    /// Random-enough token written in the lease file.
    Embedded { token: String },
    /// etcd lease id and the create revision of the lease key.
    Etcd { lease_id: i64, create_revision: i64 },
}

impl Lease {
    /// The VM this lease is for.
    #[must_use]
    pub fn vm(&self) -> &str {
        &self.vm
    }

    /// Who holds it (as given to `acquire`).
    #[must_use]
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// How long it lasts without `renew` (etcd rounds up to whole seconds
    /// and may raise it to its minimum, about 2 s).
    #[must_use]
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Whether the lease is still held, asked of `dir` right now.
    ///
    /// # Errors
    /// Only when the directory cannot answer; a lost lease is `Ok(false)`.
    pub async fn is_current(&self, dir: &crate::Directory) -> Result<bool, DirectoryError> {
        match dir.check_lease(self).await {
            Ok(()) => Ok(true),
            Err(e) if e.is_lease_lost() => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub(crate) fn lost(&self) -> DirectoryError {
        DirectoryError::LeaseLost {
            vm: self.vm.clone(),
            holder: self.holder.clone(),
        }
    }

    pub(crate) fn foreign(&self) -> DirectoryError {
        DirectoryError::ForeignLease {
            vm: self.vm.clone(),
        }
    }
}

/// Checks a site or VM name: 1 to [`MAX_NAME_LEN`] of `A-Z a-z 0-9 . _ -`,
/// not starting with a dot (names become file names and key segments).
pub(crate) fn check_name(kind: &'static str, name: &str) -> Result<(), DirectoryError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(DirectoryError::InvalidName {
            kind,
            name: name.to_owned(),
        })
    }
}

/// Checks a lease duration.
pub(crate) fn check_ttl(ttl: Duration) -> Result<(), DirectoryError> {
    if ttl < Duration::from_millis(1) {
        Err(DirectoryError::InvalidTtl)
    } else {
        Ok(())
    }
}

/// Wall-clock time in ms since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
