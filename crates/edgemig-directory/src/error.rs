//! The one error type of every directory operation, whatever the backend.

use std::path::PathBuf;

/// Why a directory operation failed.
///
/// Callers mostly care about three cases: [`DirectoryError::Unavailable`]
/// (the directory cannot be reached: decide nothing, keep VMs running),
/// [`DirectoryError::LeaseLost`] (stop acting on that VM) and the rest
/// (a bug or a broken setup).
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// A site or VM name that cannot be used as a file name or key.
    #[error(
        "Invalid {kind} name {name:?}: use 1 to 128 of A-Z a-z 0-9 . _ - (not starting with a dot)"
    )]
    InvalidName {
        /// "site", "VM" or "holder".
        kind: &'static str,
        /// The name as given.
        name: String,
    },
    /// A lease duration of zero.
    #[error("Invalid lease duration: it must be at least 1 ms")]
    InvalidTtl,
    /// The lease expired, was released, or was taken over by another holder:
    /// the guarded operation was not done.
    #[error("Lease on VM {vm} held by {holder} is no longer current")]
    LeaseLost {
        /// The VM the lease was for.
        vm: String,
        /// The holder named in the lease.
        holder: String,
    },
    /// A lease handed out by another kind of directory.
    #[error("Lease on VM {vm} was not issued by this directory backend")]
    ForeignLease {
        /// The VM the lease was for.
        vm: String,
    },
    /// The etcd cluster did not answer (down, unreachable, no leader, timeout).
    #[error("Directory etcd at {endpoints} is unavailable during {operation}")]
    Unavailable {
        /// The configured endpoints, comma separated.
        endpoints: String,
        /// What was being done ("acquire lease", "list sites", ...).
        operation: &'static str,
        /// The client error; `None` when our own deadline passed first.
        #[source]
        source: Option<etcd_client::Error>,
    },
    /// etcd answered with an error other than unavailability.
    #[error("Directory etcd refused {operation}")]
    Etcd {
        /// What was being done.
        operation: &'static str,
        #[source]
        source: etcd_client::Error,
    },
    /// etcd answered something this crate did not expect.
    #[error("Unexpected etcd answer during {operation}: {detail}")]
    Protocol {
        /// What was being done.
        operation: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// A file of the embedded directory could not be read or written.
    #[error("Cannot {action} {}", path.display())]
    Io {
        /// What was being done ("write", "read", "lock", ...).
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A record (file or etcd value) that is not valid JSON of the right shape.
    #[error("Corrupt directory record {what}")]
    Corrupt {
        /// The file path or etcd key.
        what: String,
        #[source]
        source: serde_json::Error,
    },
    /// A blocking filesystem task of the embedded directory panicked or was cancelled.
    #[error("Embedded directory task failed")]
    Task(#[source] tokio::task::JoinError),
}

impl DirectoryError {
    /// True when the directory could not be reached: no decision may be
    /// taken, but nothing is known to be wrong with the VMs either.
    #[must_use]
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }

    /// True when a guarded operation was refused because the lease is no
    /// longer held.
    #[must_use]
    pub fn is_lease_lost(&self) -> bool {
        matches!(self, Self::LeaseLost { .. } | Self::ForeignLease { .. })
    }
}
