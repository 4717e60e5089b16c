//! The build's mounts live in a mount namespace of their own.
//!
//! A mount made in the host's namespace is copied into every namespace
//! created while it exists (`ip netns exec`, `unshare -m`, test agents):
//! there it stays mounted after the build unmounts it in its own, the file
//! system is never shut down, and the image would be copied with writes
//! still pending. So the mounting thread first moves to a private mount
//! namespace (the commands it starts inherit it); nobody else sees those
//! mounts, and if the process dies they go away with the namespace.

use std::io;

use super::cmd::Cmd;
use super::error::DistroError;

/// Runs `f` on a new thread inside a private mount namespace.
pub(crate) fn in_private_namespace<T: Send>(
    f: impl FnOnce() -> Result<T, DistroError> + Send,
) -> Result<T, DistroError> {
    std::thread::scope(|scope| {
        let worker = scope.spawn(|| {
            unshare_mounts()?;
            f()
        });
        worker.join().unwrap_or_else(|_| {
            Err(DistroError::Check(
                "the build thread panicked (its mounts went away with its namespace)".into(),
            ))
        })
    })
}

/// Moves the calling thread to a new mount namespace in which no mount
/// propagates back to the host's.
fn unshare_mounts() -> Result<(), DistroError> {
    // SAFETY: unshare takes no pointers; CLONE_NEWNS only changes the
    // namespaces (and file system attributes) of this one thread.
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
        return Err(DistroError::Io {
            path: "unshare(CLONE_NEWNS)".into(),
            source: io::Error::last_os_error(),
        });
    }
    Cmd::new("mount")
        .args(["--make-rprivate", "/"])
        .run()
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount_ns(task: &str) -> std::path::PathBuf {
        std::fs::read_link(format!("{task}/ns/mnt")).unwrap()
    }

    #[test]
    fn the_worker_has_its_own_mount_namespace_and_its_children_too() {
        // Needs root (CAP_SYS_ADMIN), like every build.
        let ours = mount_ns("/proc/thread-self");
        let (worker, child) = in_private_namespace(|| {
            let child = Cmd::new("readlink").arg("/proc/self/ns/mnt").run()?;
            Ok((mount_ns("/proc/thread-self"), child.trim().to_string()))
        })
        .unwrap();
        assert_ne!(worker, ours);
        assert_eq!(child, worker.to_string_lossy());
        assert_eq!(mount_ns("/proc/thread-self"), ours, "the caller moved");
    }
}
