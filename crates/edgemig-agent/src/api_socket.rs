//! The local API socket: created mode 0600 (root only) or, with `api_group`
//! in the site config, 0660 for that group; and every connection's peer
//! credentials (`SO_PEERCRED`) are checked again on accept, so a socket
//! whose mode was loosened by hand still admits only root, the agent's own
//! user and members of that group. Refusals are logged at most once per
//! [`LOG_EVERY`].

use std::path::Path;
use std::time::{Duration, Instant};

use tokio::net::{UnixListener, UnixStream};

/// At most one log line about refused API connections per this interval.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Who may use the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// The agent's own user id (root, normally).
    pub owner: u32,
    /// The group admitted besides (`api_group`).
    pub group: Option<u32>,
}

impl Admission {
    /// Whether a peer with `uid`, primary `gid` and supplementary `groups`
    /// may use the API.
    pub fn admits(&self, uid: u32, gid: u32, groups: &[u32]) -> bool {
        uid == 0 || uid == self.owner || self.group.is_some_and(|g| gid == g || groups.contains(&g))
    }
}

/// Looks up group `name`; `None` when it does not exist.
pub fn lookup_group(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    let mut grp = std::mem::MaybeUninit::<libc::group>::uninit();
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut result: *mut libc::group = std::ptr::null_mut();
    // SAFETY: getgrnam_r writes into `grp` and `buf` (of the length given)
    // and sets `result` to `grp` on success; all outlive the call.
    let rc = unsafe {
        libc::getgrnam_r(
            c.as_ptr(),
            grp.as_mut_ptr(),
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return None;
    }
    // SAFETY: getgrnam_r succeeded and `result` points to `grp`.
    Some(unsafe { grp.assume_init() }.gr_gid)
}

/// Gives the bound socket at `path` its mode: 0600, or 0660 owned by
/// `group`.
pub fn restrict(path: &Path, group: Option<u32>) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(g) = group {
        std::os::unix::fs::chown(path, None, Some(g))?;
    }
    let mode = if group.is_some() { 0o660 } else { 0o600 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// The supplementary groups of process `pid` (`Groups:` of its status).
fn groups_of(pid: Option<i32>) -> Vec<u32> {
    let Some(pid) = pid else { return Vec::new() };
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("Groups:")).map(|g| {
                g.split_whitespace()
                    .filter_map(|n| n.parse().ok())
                    .collect()
            })
        })
        .unwrap_or_default()
}

/// The API listener, admitting only peers [`Admission`] allows.
#[derive(Debug)]
pub struct CheckedListener {
    inner: UnixListener,
    admission: Admission,
    last_log: Option<Instant>,
    refused_since_log: u64,
}

impl CheckedListener {
    /// Wraps `inner`.
    pub fn new(inner: UnixListener, admission: Admission) -> Self {
        Self {
            inner,
            admission,
            last_log: None,
            refused_since_log: 0,
        }
    }

    fn refused(&mut self, uid: u32, gid: u32) {
        self.refused_since_log += 1;
        if self.last_log.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
            tracing::warn!(
                uid,
                gid,
                refused = self.refused_since_log,
                "refused an API connection: not root, the agent's user or its api_group"
            );
            self.last_log = Some(Instant::now());
            self.refused_since_log = 0;
        }
    }
}

impl axum::serve::Listener for CheckedListener {
    type Io = UnixStream;
    type Addr = tokio::net::unix::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, addr) = match self.inner.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "API accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(cred) = stream.peer_cred() else {
                self.refused(u32::MAX, u32::MAX);
                continue;
            };
            let groups = groups_of(cred.pid());
            if self.admission.admits(cred.uid(), cred.gid(), &groups) {
                return (stream, addr);
            }
            self.refused(cred.uid(), cred.gid());
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_root_the_owner_and_the_group_are_admitted() {
        let a = Admission {
            owner: 0,
            group: Some(1234),
        };
        assert!(a.admits(0, 0, &[]));
        assert!(a.admits(1000, 1234, &[]), "primary group");
        assert!(a.admits(1000, 100, &[5, 1234]), "supplementary group");
        assert!(!a.admits(1000, 100, &[5]));
        let root_only = Admission {
            owner: 0,
            group: None,
        };
        assert!(!root_only.admits(1000, 1234, &[1234]));
    }

    #[tokio::test]
    async fn the_socket_is_root_only_and_accepts_its_own_user() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.sock");
        let listener = UnixListener::bind(&path).unwrap();
        restrict(&path, None).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        let mut checked = CheckedListener::new(
            listener,
            Admission {
                owner: me,
                group: None,
            },
        );
        let client = tokio::spawn({
            let path = path.clone();
            async move { UnixStream::connect(path).await.unwrap() }
        });
        let (_stream, _) = axum::serve::Listener::accept(&mut checked).await;
        client.await.unwrap();
    }

    #[tokio::test]
    async fn a_loosened_socket_still_refuses_other_users() {
        use std::os::unix::fs::PermissionsExt;
        use std::os::unix::process::CommandExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.path().join("api.sock");
        let listener = UnixListener::bind(&path).unwrap();
        // Someone loosened the mode by hand.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let mut checked = CheckedListener::new(
            listener,
            Admission {
                owner: 0,
                group: None,
            },
        );
        // `nobody` connects and waits for an answer.
        let mut intruder = std::process::Command::new("socat")
            .args(["-u", &format!("UNIX-CONNECT:{}", path.display()), "-"])
            .uid(65534)
            .gid(65534)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("socat (package socat)");
        let root = tokio::spawn({
            let path = path.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                UnixStream::connect(path).await.unwrap()
            }
        });
        let (stream, _) = axum::serve::Listener::accept(&mut checked).await;
        let cred = stream.peer_cred().unwrap();
        assert_eq!(cred.uid(), 0, "only root's connection was admitted");
        root.await.unwrap();
        // The intruder's connection was closed: socat ends.
        let status = tokio::task::spawn_blocking(move || intruder.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(status.code().is_some(), "socat ended on its own");
    }
}
