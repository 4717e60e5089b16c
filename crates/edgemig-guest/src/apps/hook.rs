//! The BPF hook as the MPTCP-for-applications code drives it, behind the
//! [`HookCtl`] trait (tests record what it is told): set a scope
//! (attaching on first use), or detach.
//!
//! [`BpfHook`] is the real one, over `edgemig-mptcpify`. It pins the hook
//! under [`PIN_BASE`] when `/sys/fs/bpf` is a BPF file system (mounting one
//! there if nothing is mounted), so an agent restart does not drop the
//! hook even for a moment; a new agent adopts the pinned hook
//! ([`BpfHook::adopt`]) and only rewrites its scope. Without a bpffs the
//! hook lives as long as the agent.

use std::path::{Path, PathBuf};

use edgemig_mptcpify::{HookError, Mptcpify, Scope};

/// Where the agent pins the hook.
pub const PIN_BASE: &str = "/sys/fs/bpf/edgemig-guest";

/// What the apps code asks of the hook.
pub trait HookCtl: Send {
    /// Makes `scope` the scope in force, attaching the hook if needed.
    /// Returns whether the hook is pinned.
    fn set(&mut self, scope: &Scope) -> Result<bool, HookError>;
    /// Removes the hook (and its pin).
    fn detach(&mut self) -> Result<(), HookError>;
}

/// The real hook.
#[derive(Debug)]
pub struct BpfHook {
    /// Pin base, when a bpffs is there.
    pin_base: Option<PathBuf>,
    hook: Option<Mptcpify>,
}

fn is_bpffs(path: &Path) -> bool {
    edgemig_mptcpify::hook::is_bpffs(path)
}

/// Makes sure a bpffs is mounted at `/sys/fs/bpf` (systemd mounts one;
/// the busybox image does not); whether one is there now.
fn ensure_bpffs() -> bool {
    let root = Path::new("/sys/fs/bpf");
    if is_bpffs(root) {
        return true;
    }
    if !root.is_dir() {
        return false;
    }
    let (src, dst, fs) = (c"bpf", c"/sys/fs/bpf", c"bpf");
    // SAFETY: static C strings; no data argument.
    let rc = unsafe { libc::mount(src.as_ptr(), dst.as_ptr(), fs.as_ptr(), 0, std::ptr::null()) };
    if rc != 0 {
        eprintln!(
            "edgemig-guest: cannot mount a BPF file system on /sys/fs/bpf ({}); \
             the MPTCP hook will not outlive the agent",
            std::io::Error::last_os_error()
        );
        return false;
    }
    is_bpffs(root)
}

impl BpfHook {
    /// The hook, pinned under [`PIN_BASE`] when possible. Adopts a hook an
    /// earlier agent pinned there (it stays attached meanwhile).
    pub fn adopt() -> Self {
        let pin_base = ensure_bpffs().then(|| PathBuf::from(PIN_BASE));
        let hook = pin_base
            .as_deref()
            .and_then(|base| match Mptcpify::open_pinned(base) {
                Ok(h) => h,
                Err(e) => {
                    eprintln!(
                        "edgemig-guest: the pinned MPTCP hook is unusable: {}",
                        crate::handler::error_chain(&e)
                    );
                    None
                }
            });
        if hook.is_some() {
            eprintln!("edgemig-guest: adopted the pinned MPTCP hook");
        }
        Self { pin_base, hook }
    }

    /// Whether a hook is attached (adopted or set).
    pub fn is_attached(&self) -> bool {
        self.hook.is_some()
    }
}

impl HookCtl for BpfHook {
    fn set(&mut self, scope: &Scope) -> Result<bool, HookError> {
        if let Some(h) = &self.hook {
            h.set_scope(scope)?;
            return Ok(h.pin_dir().is_some());
        }
        let hook = match &self.pin_base {
            Some(base) => match Mptcpify::attach_pinned(base, scope) {
                Ok(h) => h,
                Err(e) => {
                    eprintln!(
                        "edgemig-guest: cannot pin the MPTCP hook ({}); attaching it unpinned",
                        crate::handler::error_chain(&e)
                    );
                    Mptcpify::attach(scope)?
                }
            },
            None => Mptcpify::attach(scope)?,
        };
        let pinned = hook.pin_dir().is_some();
        self.hook = Some(hook);
        Ok(pinned)
    }

    fn detach(&mut self) -> Result<(), HookError> {
        if let Some(h) = self.hook.take() {
            h.detach()?;
        }
        Ok(())
    }
}

/// No hook at all (a guest whose kernel cannot run it, and tests): every
/// scope is refused, detaching is a no-op.
#[derive(Debug, Default)]
pub struct NoHook;

impl HookCtl for NoHook {
    fn set(&mut self, _scope: &Scope) -> Result<bool, HookError> {
        Err(HookError::NoHook)
    }

    fn detach(&mut self) -> Result<(), HookError> {
        Ok(())
    }
}
