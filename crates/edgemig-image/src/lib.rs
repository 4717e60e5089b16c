//! Builds the edgemig guest image: the Debian cloud kernel (copied as is)
//! plus an uncompressed `newc` initramfs holding busybox, the kernel modules
//! the guest needs, the statically linked `edgemig-guest` agent and an
//! `/init` script that configures the first NIC and keeps the agent running.
//!
//! See `docs/guest-image.md` for what the image contains and the `/init`
//! contract the host agent relies on.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub mod cpio;
pub mod distro;
pub mod elf;

/// The `/init` script (PID 1 in the guest).
pub const INIT_SCRIPT: &str = include_str!("init.sh");

/// Line `/init` prints on the console just before it first starts the guest
/// agent: the guest is up, its modules are loaded and eth0 is configured.
pub const READY_MARKER: &str = "edgemig-init: starting agent";

/// Prefix of the line `/init` prints after loading modules
/// (`edgemig-init: modules loaded: N of M`).
pub const MODULES_MARKER: &str = "edgemig-init: modules loaded: ";

/// Largest initramfs `build` accepts (20 MiB).
pub const MAX_INITRAMFS_BYTES: u64 = 20 * 1024 * 1024;

/// Kernel command line without the per-VM network parameters.
pub const BASE_CMDLINE: &str = "console=ttyS0 panic=-1 quiet";

/// How to build a statically linked guest agent.
pub const GUEST_AGENT_BUILD_HINT: &str = "RUSTFLAGS=\"-C target-feature=+crt-static\" cargo build -p edgemig-guest --release --target x86_64-unknown-linux-gnu";

/// Busybox applets linked into `/bin` inside the archive (what `/init` uses
/// before it runs `busybox --install -s` for the rest).
const APPLETS: &[&str] = &[
    "sh", "mount", "umount", "mkdir", "mknod", "mdev", "insmod", "rmmod", "lsmod", "ip", "sleep",
    "cat", "echo", "ln", "ls", "rm", "cp", "mv", "ps", "kill", "dmesg", "sysctl", "uname", "grep",
    "sed", "tr", "test", "[", "true", "false", "ping", "hostname", "poweroff", "reboot",
];

/// Inputs of [`build`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageSpec {
    /// Directory made by `scripts/setup.sh`: `vmlinuz`, `modules/order`,
    /// `modules/*.ko`.
    pub kernel_dir: PathBuf,
    /// Statically linked `edgemig-guest` binary (x86_64).
    pub guest_agent: PathBuf,
    /// Statically linked busybox (default `/bin/busybox`).
    pub busybox: PathBuf,
    /// Where `vmlinuz` and `initramfs.cpio` are written (created if missing).
    pub out_dir: PathBuf,
}

impl ImageSpec {
    /// Default paths relative to a repository checkout (or a data directory
    /// laid out the same way):
    /// - `kernel_dir`: `$EDGEMIG_KERNEL_DIR` if set, else `<repo>/target/guest-kernel`
    ///   (where `scripts/setup.sh` puts it);
    /// - `guest_agent`: `<repo>/target/x86_64-unknown-linux-gnu/release/edgemig-guest`;
    /// - `busybox`: `/bin/busybox`;
    /// - `out_dir`: `<repo>/target/guest-image`.
    pub fn default_paths(repo: &Path) -> ImageSpec {
        let kernel_dir = std::env::var_os("EDGEMIG_KERNEL_DIR")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| repo.join("target/guest-kernel"));
        ImageSpec {
            kernel_dir,
            guest_agent: repo.join("target/x86_64-unknown-linux-gnu/release/edgemig-guest"),
            busybox: PathBuf::from("/bin/busybox"),
            out_dir: repo.join("target/guest-image"),
        }
    }
}

/// Output of [`build`]. Serialized as JSON by the CLI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuiltImage {
    /// `<out_dir>/vmlinuz`.
    pub kernel: PathBuf,
    /// `<out_dir>/initramfs.cpio`.
    pub initramfs: PathBuf,
    /// Size of the initramfs in bytes.
    pub initramfs_bytes: u64,
}

/// Why the image could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("Kernel directory {} not found; run scripts/setup.sh", path.display())]
    KernelDirMissing {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("Kernel image {} not found; run scripts/setup.sh", path.display())]
    KernelMissing {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("Kernel modules order file {} not found; run scripts/setup.sh", path.display())]
    ModulesOrderMissing {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("Bad entry {entry:?} in {}: expected a module file name", order.display())]
    BadModuleEntry { order: PathBuf, entry: String },
    #[error(
        "Kernel module {} (listed in {}) cannot be read; run scripts/setup.sh",
        path.display(),
        order.display()
    )]
    ModuleMissing {
        path: PathBuf,
        order: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "Kernel module {module} needs {dependency}, which {} does not list before it; run scripts/setup.sh",
        order.display()
    )]
    ModuleDependencyMissing {
        module: String,
        dependency: String,
        order: PathBuf,
    },
    #[error(
        "Guest agent binary {} not found; build it with `{GUEST_AGENT_BUILD_HINT}`",
        path.display()
    )]
    GuestAgentMissing {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("Guest agent {} is not an x86_64 ELF executable", path.display())]
    GuestAgentNotElf {
        path: PathBuf,
        #[source]
        source: elf::NotElf,
    },
    #[error(
        "Guest agent {} is dynamically linked (it has an ELF interpreter); rebuild it statically with `{GUEST_AGENT_BUILD_HINT}`",
        path.display()
    )]
    GuestAgentNotStatic { path: PathBuf },
    #[error("Busybox {} not found; install busybox-static (scripts/setup.sh does)", path.display())]
    BusyboxMissing {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("Busybox {} is not an x86_64 ELF executable", path.display())]
    BusyboxNotElf {
        path: PathBuf,
        #[source]
        source: elf::NotElf,
    },
    #[error("Busybox {} is dynamically linked; install busybox-static", path.display())]
    BusyboxNotStatic { path: PathBuf },
    #[error("Initramfs would be {bytes} bytes, over the {limit}-byte budget")]
    TooLarge { bytes: u64, limit: u64 },
    #[error("Cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Builds the guest image into `spec.out_dir`: `vmlinuz` (a copy of the
/// kernel) and `initramfs.cpio`. Both are written atomically (temporary
/// file, then rename), so a concurrent reader sees either the old or the new
/// file. Inputs are checked first; nothing is written if one is wrong.
pub fn build(spec: &ImageSpec) -> Result<BuiltImage, ImageError> {
    let kernel = check_kernel(&spec.kernel_dir)?;
    let initramfs = build_initramfs(spec)?;
    let initramfs_bytes = initramfs.len() as u64;

    fs::create_dir_all(&spec.out_dir).map_err(|source| ImageError::Write {
        path: spec.out_dir.clone(),
        source,
    })?;
    let kernel_out = spec.out_dir.join("vmlinuz");
    let initramfs_out = spec.out_dir.join("initramfs.cpio");
    write_atomic(&kernel_out, |tmp| fs::copy(&kernel, tmp).map(drop))?;
    write_atomic(&initramfs_out, |tmp| {
        let mut f = fs::File::create(tmp)?;
        f.write_all(&initramfs)?;
        f.sync_all()
    })?;
    Ok(BuiltImage {
        kernel: kernel_out,
        initramfs: initramfs_out,
        initramfs_bytes,
    })
}

/// Checks the inputs and returns the initramfs (a `newc` cpio archive) in
/// memory, without writing anything.
pub fn build_initramfs(spec: &ImageSpec) -> Result<Vec<u8>, ImageError> {
    check_kernel(&spec.kernel_dir)?;
    let modules = read_modules(&spec.kernel_dir)?;
    let agent = read_static_exe(&spec.guest_agent, Role::GuestAgent)?;
    let busybox = read_static_exe(&spec.busybox, Role::Busybox)?;

    let write_err = |source| ImageError::Write {
        path: PathBuf::from("initramfs (in memory)"),
        source,
    };
    let mut w = cpio::NewcWriter::new(Vec::new());
    (|| -> io::Result<()> {
        for dir in [
            "bin",
            "sbin",
            "usr",
            "usr/bin",
            "usr/sbin",
            "lib",
            "lib/modules",
            "dev",
            "proc",
            "sys",
            "run",
            "etc",
            "root",
        ] {
            w.dir(dir, 0o755)?;
        }
        w.dir("tmp", 0o1777)?;
        w.char_dev("dev/console", 0o600, 5, 1)?;
        w.char_dev("dev/null", 0o666, 1, 3)?;
        w.file("init", 0o755, INIT_SCRIPT.as_bytes())?;
        w.file("bin/busybox", 0o755, &busybox)?;
        for applet in APPLETS {
            w.symlink(&format!("bin/{applet}"), "busybox")?;
        }
        w.file("bin/edgemig-guest", 0o755, &agent)?;
        let mut order = String::new();
        for (name, data) in &modules {
            w.file(&format!("lib/modules/{name}"), 0o644, data)?;
            order.push_str(name);
            order.push('\n');
        }
        w.file("lib/modules/order", 0o644, order.as_bytes())?;
        w.file("etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\n")?;
        w.file("etc/group", 0o644, b"root:x:0:\n")?;
        w.file("etc/hosts", 0o644, b"127.0.0.1 localhost\n::1 localhost\n")?;
        w.file("etc/hostname", 0o644, b"edgemig-guest\n")?;
        w.symlink("etc/mtab", "/proc/mounts")?;
        Ok(())
    })()
    .map_err(write_err)?;
    let archive = w.finish().map_err(write_err)?;
    let bytes = archive.len() as u64;
    if bytes > MAX_INITRAMFS_BYTES {
        return Err(ImageError::TooLarge {
            bytes,
            limit: MAX_INITRAMFS_BYTES,
        });
    }
    Ok(archive)
}

/// The kernel command line the host agent boots a guest with. `ip0` is
/// `ADDR/PREFIX` for eth0 (nic0); `gw` the optional default gateway.
pub fn kernel_cmdline(ip0: &str, gw: Option<&str>) -> String {
    let mut s = format!("{BASE_CMDLINE} edgemig.ip0={ip0}");
    if let Some(gw) = gw {
        s.push_str(" edgemig.gw=");
        s.push_str(gw);
    }
    s
}

/// Checks the kernel directory and returns the path of `vmlinuz`.
fn check_kernel(dir: &Path) -> Result<PathBuf, ImageError> {
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(ImageError::KernelDirMissing {
                path: dir.to_path_buf(),
                source: io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
            });
        }
        Err(source) => {
            return Err(ImageError::KernelDirMissing {
                path: dir.to_path_buf(),
                source,
            });
        }
    }
    let vmlinuz = dir.join("vmlinuz");
    match fs::metadata(&vmlinuz) {
        Ok(m) if m.is_file() && m.len() > 0 => Ok(vmlinuz),
        Ok(_) => Err(ImageError::KernelMissing {
            path: vmlinuz,
            source: io::Error::new(io::ErrorKind::InvalidData, "not a non-empty file"),
        }),
        Err(source) => Err(ImageError::KernelMissing {
            path: vmlinuz,
            source,
        }),
    }
}

/// Reads `modules/order` and every module it lists, in order.
fn read_modules(kernel_dir: &Path) -> Result<Vec<(String, Vec<u8>)>, ImageError> {
    let modules_dir = kernel_dir.join("modules");
    let order = modules_dir.join("order");
    let text = fs::read_to_string(&order).map_err(|source| ImageError::ModulesOrderMissing {
        path: order.clone(),
        source,
    })?;
    let mut modules = Vec::new();
    for line in text.lines() {
        let name = line.trim();
        if name.is_empty() {
            continue;
        }
        if name.contains('/') || name == "." || name == ".." || name == "order" {
            return Err(ImageError::BadModuleEntry {
                order,
                entry: name.to_string(),
            });
        }
        let path = modules_dir.join(name);
        let data = fs::read(&path).map_err(|source| ImageError::ModuleMissing {
            path: path.clone(),
            order: order.clone(),
            source,
        })?;
        modules.push((name.to_string(), data));
    }
    // insmod does not resolve dependencies: each must be loaded earlier.
    // (`depends=` lists only modular dependencies, never built-in ones.)
    for (i, (name, data)) in modules.iter().enumerate() {
        for dependency in module_depends(data) {
            let loaded_before = modules[..i]
                .iter()
                .any(|(earlier, _)| module_name(earlier) == dependency);
            if !loaded_before {
                return Err(ImageError::ModuleDependencyMissing {
                    module: name.clone(),
                    dependency,
                    order,
                });
            }
        }
    }
    Ok(modules)
}

/// Module name of a module file: `virtio-rng.ko.xz` -> `virtio_rng`.
fn module_name(file: &str) -> String {
    file.split(".ko").next().unwrap_or(file).replace('-', "_")
}

/// The `depends=` entry of a module's `.modinfo` (NUL-separated strings).
fn module_depends(data: &[u8]) -> Vec<String> {
    const KEY: &[u8] = b"\0depends=";
    let Some(start) = data.windows(KEY.len()).position(|w| w == KEY) else {
        return Vec::new();
    };
    let value = &data[start + KEY.len()..];
    let value = &value[..value.iter().position(|&b| b == 0).unwrap_or(value.len())];
    String::from_utf8_lossy(value)
        .split(',')
        .map(|d| d.trim().replace('-', "_"))
        .filter(|d| !d.is_empty())
        .collect()
}

#[derive(Clone, Copy)]
enum Role {
    GuestAgent,
    Busybox,
}

/// Reads an executable that must be a statically linked x86_64 ELF.
fn read_static_exe(path: &Path, role: Role) -> Result<Vec<u8>, ImageError> {
    let path_buf = path.to_path_buf();
    let data = fs::read(path).map_err(|source| match role {
        Role::GuestAgent => ImageError::GuestAgentMissing {
            path: path_buf.clone(),
            source,
        },
        Role::Busybox => ImageError::BusyboxMissing {
            path: path_buf.clone(),
            source,
        },
    })?;
    let info = elf::inspect(&data).and_then(|info| {
        if info.is_64 && info.machine == elf::EM_X86_64 {
            Ok(info)
        } else {
            Err(elf::NotElf("Not a 64-bit x86_64 executable"))
        }
    });
    match (role, info) {
        (_, Ok(info)) if info.is_static() => Ok(data),
        (Role::GuestAgent, Ok(_)) => Err(ImageError::GuestAgentNotStatic { path: path_buf }),
        (Role::Busybox, Ok(_)) => Err(ImageError::BusyboxNotStatic { path: path_buf }),
        (Role::GuestAgent, Err(source)) => Err(ImageError::GuestAgentNotElf {
            path: path_buf,
            source,
        }),
        (Role::Busybox, Err(source)) => Err(ImageError::BusyboxNotElf {
            path: path_buf,
            source,
        }),
    }
}

/// Writes `path` by letting `fill` create a temporary file next to it, then
/// renaming it over `path`. The temporary file is removed on failure.
fn write_atomic(path: &Path, fill: impl FnOnce(&Path) -> io::Result<()>) -> Result<(), ImageError> {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = fill(&tmp).and_then(|()| fs::rename(&tmp, path));
    result.map_err(|source| {
        let _ = fs::remove_file(&tmp);
        ImageError::Write {
            path: path.to_path_buf(),
            source,
        }
    })
}

#[cfg(test)]
mod tests;
