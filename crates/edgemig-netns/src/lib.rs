//! Named network namespaces as `ip netns` keeps them (`/run/netns/NAME`,
//! a bind mount of a namespace file): create, delete, list, and run code
//! inside one on a dedicated std thread, so the caller's thread (a tokio
//! worker, say) never changes namespace.

pub mod sysctl;

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Where named namespaces live.
pub const NETNS_DIR: &str = "/run/netns";

/// Errors of namespace operations.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// The name cannot name a namespace file.
    #[error("Invalid network namespace name {0:?}")]
    InvalidName(String),
    /// A namespace with this name exists already.
    #[error("Network namespace {0:?} already exists")]
    Exists(String),
    /// A system call failed.
    #[error("Cannot {what} network namespace {name:?}")]
    Sys {
        /// What was attempted.
        what: &'static str,
        /// Namespace.
        name: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The helper thread could not be started.
    #[error("Cannot start a namespace thread")]
    Spawn(#[source] io::Error),
}

/// Path of the namespace file for `name`.
pub fn netns_path(name: &str) -> Result<PathBuf, NetnsError> {
    if name.is_empty()
        || name == "."
        || name == ".."
        || name.len() > 64
        || name.contains(['/', '\0'])
    {
        return Err(NetnsError::InvalidName(name.to_owned()));
    }
    Ok(Path::new(NETNS_DIR).join(name))
}

/// Whether namespace `name` exists.
pub fn exists(name: &str) -> bool {
    netns_path(name).is_ok_and(|p| p.exists())
}

/// Names of the existing namespaces that start with `prefix`.
pub fn list_with_prefix(prefix: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    names
}

fn sys(what: &'static str, name: &str) -> impl FnOnce(io::Error) -> NetnsError {
    let name = name.to_owned();
    move |source| NetnsError::Sys { what, name, source }
}

fn cstring(path: &Path) -> io::Result<std::ffi::CString> {
    std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).map_err(io::Error::other)
}

/// Creates namespace `name` (like `ip netns add`), with loopback down.
pub fn create(name: &str) -> Result<(), NetnsError> {
    let path = netns_path(name)?;
    std::fs::create_dir_all(NETNS_DIR).map_err(sys("create the directory of", name))?;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                NetnsError::Exists(name.to_owned())
            } else {
                NetnsError::Sys {
                    what: "create the file of",
                    name: name.to_owned(),
                    source: e,
                }
            }
        })?;
    let target = cstring(&path).map_err(sys("name", name))?;
    let made = std::thread::scope(|scope| {
        scope
            .spawn(|| -> io::Result<()> {
                // SAFETY: unshare only changes this (dedicated) thread's
                // network namespace.
                if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                    return Err(io::Error::last_os_error());
                }
                let source = c"/proc/thread-self/ns/net";
                // SAFETY: both paths are valid NUL-terminated strings; a bind
                // mount has no filesystem type or data.
                let rc = unsafe {
                    libc::mount(
                        source.as_ptr(),
                        target.as_ptr(),
                        std::ptr::null(),
                        libc::MS_BIND,
                        std::ptr::null(),
                    )
                };
                if rc != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("namespace thread panicked")))
    });
    if let Err(e) = made {
        let _ = std::fs::remove_file(&path);
        return Err(NetnsError::Sys {
            what: "create",
            name: name.to_owned(),
            source: e,
        });
    }
    Ok(())
}

/// Deletes namespace `name` (like `ip netns delete`). The namespace itself
/// goes away with its last process; its interfaces with it.
pub fn delete(name: &str) -> Result<(), NetnsError> {
    let path = netns_path(name)?;
    let target = cstring(&path).map_err(sys("name", name))?;
    // SAFETY: `target` is a valid NUL-terminated path.
    if unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) } != 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINVAL) && err.raw_os_error() != Some(libc::ENOENT) {
            return Err(NetnsError::Sys {
                what: "unmount",
                name: name.to_owned(),
                source: err,
            });
        }
    }
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(NetnsError::Sys {
            what: "remove",
            name: name.to_owned(),
            source: e,
        }),
    }
}

/// Runs `f` on a new thread that has joined namespace `name` and returns
/// its result. A panic in `f` is resumed on the calling thread.
pub fn in_netns<T, F>(name: &str, f: F) -> Result<T, NetnsError>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    let path = netns_path(name)?;
    let file = File::open(&path).map_err(sys("open", name))?;
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name(format!("netns-{name}"))
            .spawn_scoped(scope, move || {
                // SAFETY: `file` is an open namespace file that outlives the
                // call; setns only affects this thread.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                if rc != 0 {
                    return Err(NetnsError::Sys {
                        what: "enter",
                        name: name.to_owned(),
                        source: io::Error::last_os_error(),
                    });
                }
                drop(file);
                Ok(f())
            })
            .map_err(NetnsError::Spawn)?;
        match handle.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own_ns_inode() -> u64 {
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata("/proc/thread-self/ns/net").unwrap())
    }

    #[test]
    fn rejects_bad_names() {
        for bad in ["", ".", "..", "a/b", "x\0"] {
            assert!(matches!(
                in_netns(bad, || ()),
                Err(NetnsError::InvalidName(_))
            ));
        }
        assert!(matches!(
            in_netns("edgemig-no-such-ns", || ()),
            Err(NetnsError::Sys { .. })
        ));
    }

    #[test]
    fn create_enter_list_delete() {
        let name = format!("emns{}", std::process::id());
        create(&name).unwrap();
        assert!(exists(&name));
        assert!(matches!(create(&name), Err(NetnsError::Exists(_))));
        assert!(list_with_prefix(&name).contains(&name));
        let outside = own_ns_inode();
        let inside = in_netns(&name, own_ns_inode).unwrap();
        assert_ne!(outside, inside, "the thread must be in the new namespace");
        assert_eq!(own_ns_inode(), outside, "the caller's thread must not move");
        // `ip` sees it as a namespace too.
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", &name, "true"])
            .status()
            .unwrap();
        assert!(out.success());
        delete(&name).unwrap();
        assert!(!exists(&name));
        delete(&name).unwrap();
    }
}
