//! Why a distribution image could not be built.

use std::io;
use std::path::PathBuf;

/// Errors of [`build`](super::build) and its steps.
#[derive(Debug, thiserror::Error)]
pub enum DistroError {
    /// A package name that Debian would not accept.
    #[error(
        "Bad package name {0:?}: Debian names are 2 or more of [a-z0-9+.-], starting with a letter or digit"
    )]
    BadPackage(String),
    /// The virtual size is out of range.
    #[error("Image size {bytes} bytes is out of range ({min}..={max})")]
    BadSize {
        /// Requested size.
        bytes: u64,
        /// Smallest size accepted.
        min: u64,
        /// Largest size accepted.
        max: u64,
    },
    /// An unknown distribution name.
    #[error("Unknown distribution {0:?}: only \"debian12\" is supported")]
    UnknownDistro(String),
    /// The guest agent package cannot be read.
    #[error("Guest agent package {} cannot be read; build it with scripts/build.sh (scripts/package-debs.sh)", path.display())]
    AgentDebMissing {
        /// Path tried.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// This step needs root (loop devices, mounts, chroot).
    #[error("Building a disk image needs root (loop devices, mounts, chroot)")]
    NotRoot,
    /// A host tool is not installed.
    #[error(
        "Cannot run {program}; install it (scripts/setup.sh installs every tool the build needs)"
    )]
    ToolMissing {
        /// Program name.
        program: String,
        /// Why it could not be started.
        #[source]
        source: io::Error,
    },
    /// A command ran and failed.
    #[error("{command} failed ({status}): {stderr}")]
    CommandFailed {
        /// The command line, shell-quoted.
        command: String,
        /// Its exit status.
        status: String,
        /// The end of what it wrote on stderr (and stdout).
        stderr: String,
    },
    /// The loop device's partitions did not show up.
    #[error("Partition {} of loop device did not appear", path.display())]
    PartitionMissing {
        /// Device node waited for.
        path: PathBuf,
    },
    /// The installed kernel lacks what the guest agent needs.
    #[error(
        "Kernel {version} lacks {missing} (the guest agent's BPF hook needs BTF and the BPF JIT); is bookworm-backports reachable?"
    )]
    KernelUnfit {
        /// Kernel release found in /boot.
        version: String,
        /// Config options missing.
        missing: String,
    },
    /// No kernel, or more than one, in the root file system.
    #[error("Expected exactly one kernel in /boot of the root file system, found {0}")]
    KernelCount(usize),
    /// A check of the finished root file system failed.
    #[error("Root file system check failed: {0}")]
    Check(String),
    /// Reading or writing a file failed.
    #[error("Cannot access {}", path.display())]
    Io {
        /// File or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The image metadata could not be encoded or decoded.
    #[error("Bad image metadata {}", path.display())]
    Metadata {
        /// Metadata file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

impl DistroError {
    /// An [`DistroError::Io`] for `path`.
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> DistroError {
        let path = path.into();
        move |source| DistroError::Io { path, source }
    }
}
