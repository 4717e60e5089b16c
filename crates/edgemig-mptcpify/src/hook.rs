//! Loading the mptcpify program ([`Program`]) and attaching it to
//! `update_socket_protocol` ([`Mptcpify`]), optionally pinned in a bpffs so
//! that it outlives the process that attached it.
//!
//! Loading: `BPF_PROG_LOAD` with type `BPF_PROG_TYPE_TRACING`, expected
//! attach type `BPF_MODIFY_RETURN`, `attach_btf_id` = the BTF id of the
//! `update_socket_protocol` FUNC in `/sys/kernel/btf/vmlinux`, license
//! `GPL`. A refused program comes back with the verifier's log
//! ([`HookError::Verifier`]). Attaching: `BPF_LINK_CREATE`; the hook is on
//! as long as the link lives.
//!
//! **Pinning.** An agent restart must not drop the hook, not even for a
//! moment: sockets created meanwhile (a service restarted at the same
//! time, say) would stay TCP for their whole life. So the guest agent pins
//! the link and both maps under `<base>/mptcpify-v<PIN_VERSION>/{link,
//! config, cgroups}` (base normally `/sys/fs/bpf/edgemig-guest`) with
//! [`Mptcpify::attach_pinned`]; the next agent finds them there and only
//! rewrites the scope. A pinned hook stays until [`Mptcpify::detach`] (or
//! a reboot, or removing that directory): dropping the handle leaves it
//! attached. [`Mptcpify::attach`] (no pin) detaches on drop. The version
//! in the directory name changes whenever the program or the map layout
//! does; pins of other versions are removed once a new one is attached.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::btf::{self, BtfError};
use crate::insn::{self, AsmError};
use crate::maps::{MapError, Maps, Scope};
use crate::program;
use crate::sys;

/// The kernel function the program attaches to.
pub const HOOK: &str = "update_socket_protocol";
/// Version of the program and map layout, part of the pin directory name.
pub const PIN_VERSION: u32 = 1;
/// Name of the pin directory of this version under the base directory.
pub fn pin_dir_name() -> String {
    format!("mptcpify-v{PIN_VERSION}")
}

/// `BPF_FS_MAGIC`.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Errors loading, attaching, pinning or detaching.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// The kernel's BTF could not be read.
    #[error("Cannot find {HOOK} in the kernel's BTF")]
    Btf(#[source] BtfError),
    /// The kernel has no such function (Linux before 6.6).
    #[error("The kernel has no {HOOK} function (Linux 6.6 or later is needed)")]
    NoHook,
    /// The function is not the one this program expects.
    #[error("{HOOK} takes {0} parameters, 3 expected")]
    BadSignature(usize),
    /// The program could not be assembled (a bug).
    #[error("Cannot assemble the mptcpify program")]
    Asm(#[source] AsmError),
    /// A map operation failed.
    #[error(transparent)]
    Map(#[from] MapError),
    /// The kernel refused the program.
    #[error("The kernel refused the mptcpify program; verifier log:\n{log}")]
    Verifier {
        /// The verifier's log (may be empty).
        log: String,
        /// The error of the load.
        #[source]
        source: std::io::Error,
    },
    /// Attaching failed.
    #[error("Cannot attach to {HOOK}")]
    Attach(#[source] std::io::Error),
    /// The pin directory is not on a bpffs.
    #[error("{0} is not on a BPF file system (mount -t bpf bpf /sys/fs/bpf)")]
    NotBpffs(String),
    /// Pinning, opening or removing a pin failed.
    #[error("BPF pin {path}: {op} failed")]
    Pin {
        /// What was attempted.
        op: &'static str,
        /// Path.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

impl HookError {
    /// The errno behind this error, when a system call failed.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Self::Verifier { source, .. } | Self::Attach(source) | Self::Pin { source, .. } => {
                source.raw_os_error()
            }
            Self::Map(MapError::Bpf { source, .. }) => source.raw_os_error(),
            _ => None,
        }
    }
}

fn pin_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> HookError + 'a {
    move |source| HookError::Pin {
        op,
        path: path.display().to_string(),
        source,
    }
}

/// The BTF id of [`HOOK`] in the running kernel, checking its signature.
pub fn hook_btf_id(btf_path: &Path) -> Result<u32, HookError> {
    let (id, params) = btf::find_func(btf_path, HOOK)
        .map_err(HookError::Btf)?
        .ok_or(HookError::NoHook)?;
    if params != 3 {
        return Err(HookError::BadSignature(params));
    }
    Ok(id)
}

/// The program, loaded and verified, with its maps; not attached.
#[derive(Debug)]
pub struct Program {
    prog: OwnedFd,
    maps: Maps,
}

impl Program {
    /// Creates the maps (mode off) and loads the program against the
    /// running kernel's BTF. Nothing changes for any socket until
    /// [`Program::attach`].
    pub fn load() -> Result<Self, HookError> {
        Self::load_with_btf(Path::new(btf::VMLINUX))
    }

    /// [`Program::load`] with the kernel BTF read from `btf_path`.
    pub fn load_with_btf(btf_path: &Path) -> Result<Self, HookError> {
        let btf_id = hook_btf_id(btf_path)?;
        let maps = Maps::create()?;
        let insns = program::mptcpify(maps.config.as_raw_fd(), maps.cgroups.as_raw_fd())
            .map_err(HookError::Asm)?;
        let code = insn::encode(&insns);
        let prog = sys::prog_load(&sys::ProgLoad {
            prog_type: sys::PROG_TRACING,
            expected_attach_type: sys::ATTACH_MODIFY_RETURN,
            attach_btf_id: btf_id,
            insns: &code,
            license: "GPL",
            name: "em_mptcpify",
        })
        .map_err(|f| HookError::Verifier {
            log: f.log,
            source: f.error,
        })?;
        Ok(Self { prog, maps })
    }

    /// Writes the scope (before or after attaching).
    pub fn set_scope(&self, scope: &Scope) -> Result<(), HookError> {
        Ok(self.maps.set_scope(scope)?)
    }

    /// The scope the maps hold.
    pub fn scope(&self) -> Result<Scope, HookError> {
        Ok(self.maps.scope()?)
    }

    /// Attaches the program: from now on, new sockets in the scope are
    /// MPTCP. Detached when the returned handle is dropped.
    pub fn attach(self) -> Result<Mptcpify, HookError> {
        let link = sys::link_create(self.prog.as_raw_fd(), sys::ATTACH_MODIFY_RETURN)
            .map_err(HookError::Attach)?;
        Ok(Mptcpify {
            link,
            maps: self.maps,
            pinned: None,
        })
    }
}

/// The attached hook.
#[derive(Debug)]
pub struct Mptcpify {
    link: OwnedFd,
    maps: Maps,
    /// The pin directory, when pinned.
    pinned: Option<PathBuf>,
}

/// Whether `path` lies on a bpffs.
pub fn is_bpffs(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: an all-zero statfs is a valid value of this plain C struct.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid C string and `st` a writable statfs, both
    // alive for the call.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    rc == 0 && st.f_type as i64 == BPF_FS_MAGIC
}

/// The files of a pin directory.
struct PinPaths {
    dir: PathBuf,
    link: PathBuf,
    config: PathBuf,
    cgroups: PathBuf,
}

impl PinPaths {
    fn new(base: &Path) -> Self {
        let dir = base.join(pin_dir_name());
        Self {
            link: dir.join("link"),
            config: dir.join("config"),
            cgroups: dir.join("cgroups"),
            dir,
        }
    }

    /// Removes the pins and the directory; absent ones are fine.
    fn remove(&self) -> Result<(), HookError> {
        remove_pin_dir(&self.dir)
    }
}

/// Removes every file of a pin directory, then the directory.
fn remove_pin_dir(dir: &Path) -> Result<(), HookError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(pin_err("list", dir)(e)),
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(pin_err("remove", &path)(e)),
        }
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(pin_err("remove", dir)(e)),
    }
}

impl Mptcpify {
    /// Loads and attaches the program with `scope`, not pinned: the hook
    /// goes away when the handle is dropped (or the process ends).
    pub fn attach(scope: &Scope) -> Result<Self, HookError> {
        let program = Program::load()?;
        program.set_scope(scope)?;
        program.attach()
    }

    /// Opens the hook pinned under `base` (see the module docs), if there
    /// is one of this [`PIN_VERSION`].
    pub fn open_pinned(base: &Path) -> Result<Option<Self>, HookError> {
        let p = PinPaths::new(base);
        if !p.link.exists() {
            return Ok(None);
        }
        let get = |path: &Path| sys::obj_get(path).map_err(pin_err("open", path));
        let link = get(&p.link)?;
        let maps = Maps::from_fds(get(&p.config)?, get(&p.cgroups)?);
        // A pin of this version holds a mode this version knows.
        maps.scope()?;
        Ok(Some(Self {
            link,
            maps,
            pinned: Some(p.dir),
        }))
    }

    /// The hook pinned under `base` with `scope`: the existing pin when
    /// there is one (only its scope is rewritten, the hook never goes
    /// away), else a new hook, pinned. Pins of other versions under `base`
    /// are removed afterwards. Dropping the handle leaves the hook
    /// attached; [`Mptcpify::detach`] removes it.
    pub fn attach_pinned(base: &Path, scope: &Scope) -> Result<Self, HookError> {
        std::fs::create_dir_all(base).map_err(pin_err("create", base))?;
        if !is_bpffs(base) {
            return Err(HookError::NotBpffs(base.display().to_string()));
        }
        let hook = match Self::open_pinned(base) {
            Ok(Some(hook)) => {
                hook.set_scope(scope)?;
                hook
            }
            Ok(None) | Err(_) => {
                let p = PinPaths::new(base);
                p.remove()?;
                let mut hook = Self::attach(scope)?;
                std::fs::create_dir(&p.dir).map_err(pin_err("create", &p.dir))?;
                // Maps first, the link last: a directory with a link is
                // complete.
                sys::obj_pin(hook.maps.config.as_raw_fd(), &p.config)
                    .map_err(pin_err("pin", &p.config))?;
                sys::obj_pin(hook.maps.cgroups.as_raw_fd(), &p.cgroups)
                    .map_err(pin_err("pin", &p.cgroups))?;
                sys::obj_pin(hook.link.as_raw_fd(), &p.link).map_err(pin_err("pin", &p.link))?;
                hook.pinned = Some(p.dir);
                hook
            }
        };
        remove_other_versions(base)?;
        Ok(hook)
    }

    /// Rewrites the scope; the hook stays attached throughout.
    pub fn set_scope(&self, scope: &Scope) -> Result<(), HookError> {
        Ok(self.maps.set_scope(scope)?)
    }

    /// The scope in force.
    pub fn scope(&self) -> Result<Scope, HookError> {
        Ok(self.maps.scope()?)
    }

    /// The pin directory, when pinned.
    pub fn pin_dir(&self) -> Option<&Path> {
        self.pinned.as_deref()
    }

    /// Removes the hook: unpins it (when pinned) and closes it. New
    /// sockets are TCP again once this returns (sockets created before
    /// keep their protocol).
    pub fn detach(mut self) -> Result<(), HookError> {
        if let Some(dir) = self.pinned.take() {
            remove_pin_dir(&dir)?;
        }
        // Dropping the last descriptor releases the link.
        drop(self.link);
        Ok(())
    }
}

/// Removes `mptcpify-v*` pin directories of other versions under `base`.
fn remove_other_versions(base: &Path) -> Result<(), HookError> {
    let ours = pin_dir_name();
    let Ok(entries) = std::fs::read_dir(base) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("mptcpify-v") && name != ours {
            remove_pin_dir(&entry.path())?;
        }
    }
    Ok(())
}
