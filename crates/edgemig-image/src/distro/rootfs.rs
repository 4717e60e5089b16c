//! The root file system, made by `mmdebstrap` from the Debian archive
//! (bookworm, bookworm-updates, bookworm-security and bookworm-backports)
//! into a tarball that is cached by [`rootfs_key`]. The kernel is pinned to
//! bookworm-backports (the pin stays in the image, so upgrades keep it),
//! `/usr` is merged, and documentation, manual pages and translations are
//! left out.

use std::fs;
use std::path::{Path, PathBuf};

use super::cache::CacheDir;
use super::cmd::Cmd;
use super::error::DistroError;
use super::spec::{DistroSpec, rootfs_key};

/// Packages of every image, on top of Debian's essential set and apt:
/// init and device management, the bookworm-backports cloud kernel (6.12:
/// BTF and the BPF JIT for the guest agent's hook) with an initramfs, the
/// network tools, `mptcpize` (MPTCP for unmodified programs through
/// LD_PRELOAD; the mptcpd daemon, which would manage the MPTCP endpoints
/// the guest agent owns, is left out) and GRUB for BIOS and UEFI
/// (so the guest can reinstall and reconfigure its boot loader).
pub const BASE_PACKAGES: &[&str] = &[
    "systemd-sysv",
    "udev",
    "dbus",
    "linux-image-cloud-amd64",
    "initramfs-tools",
    "zstd",
    "e2fsprogs",
    "iproute2",
    "mptcpize",
    "netbase",
    "procps",
    "grub-pc-bin",
    "grub-efi-amd64-bin",
    "grub2-common",
];

/// Where mmdebstrap's merged-/usr hook lives (package mmdebstrap).
const MERGED_USR_HOOK: &str = "/usr/share/mmdebstrap/hooks/merged-usr";

/// apt pin: the kernel from bookworm-backports.
const KERNEL_PIN: &str = "\
# edgemig: the cloud kernel comes from bookworm-backports (6.12: BTF, BPF JIT,
# the update_socket_protocol hook). Kept for upgrades.
Package: linux-image-cloud-amd64 linux-image-*-cloud-amd64
Pin: release n=bookworm-backports
Pin-Priority: 990
";

/// initramfs-tools: only the listed disk drivers (a third of the size of
/// MODULES=most, seconds less to load under TCG), zstd compression.
const INITRAMFS_CONF: &str = "\
# edgemig: small initramfs. For other disk controllers list their modules in
# /etc/initramfs-tools/modules (or set MODULES=most), then update-initramfs -u.
MODULES=list
COMPRESS=zstd
";

/// Disk drivers in the initramfs (virtio_pci, NVMe and ext4 are built in).
const INITRAMFS_MODULES: &str = "\
# edgemig: disk drivers for the root file system.
virtio_blk
virtio_scsi
sd_mod
ahci
";

/// Paths dpkg leaves out (mmdebstrap's `--dpkgopt`; kept in the image's
/// `/etc/dpkg/dpkg.cfg.d/99mmdebstrap` for later installs).
const DPKG_OPTIONS: &[&str] = &[
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
];

/// Everything of the recipe that shapes the tarball besides the spec (part
/// of its cache key).
pub(crate) fn recipe() -> String {
    format!(
        "{BASE_PACKAGES:?}\n{MERGED_USR_HOOK}\n{KERNEL_PIN}{INITRAMFS_CONF}{INITRAMFS_MODULES}{DPKG_OPTIONS:?}\n"
    )
}

/// Returns the tarball of `spec`'s root file system, building it with
/// mmdebstrap when the cache does not hold it; `true` when it was cached.
pub(crate) fn tarball(spec: &DistroSpec, cache: &CacheDir) -> Result<(PathBuf, bool), DistroError> {
    let key = rootfs_key(spec);
    let path = cache.rootfs().join(format!("{key}.tar"));
    let _lock = cache.lock(&format!("rootfs-{key}"))?;
    if path.is_file() {
        return Ok((path, true));
    }
    let work = tempfile::Builder::new()
        .prefix("rootfs-")
        .tempdir_in(cache.work())
        .map_err(DistroError::io(cache.work()))?;
    let staging = work.path().join("files");
    write_staging(&staging)?;
    let tmp = cache
        .rootfs()
        .join(format!(".{key}.tmp-{}.tar", std::process::id()));
    let result = mmdebstrap(spec, &staging, &tmp)
        .and_then(|()| fs::rename(&tmp, &path).map_err(DistroError::io(&path)));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map(|()| (path, false))
}

/// Files copied into the chroot before any package is installed.
fn write_staging(dir: &Path) -> Result<(), DistroError> {
    for (rel, text) in [
        ("etc/apt/preferences.d/edgemig-kernel.pref", KERNEL_PIN),
        ("etc/initramfs-tools/conf.d/edgemig.conf", INITRAMFS_CONF),
        (
            "usr/share/initramfs-tools/modules.d/edgemig",
            INITRAMFS_MODULES,
        ),
    ] {
        let p = dir.join(rel);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).map_err(DistroError::io(parent))?;
        }
        fs::write(&p, text).map_err(DistroError::io(&p))?;
    }
    Ok(())
}

/// The package list given to mmdebstrap: the base set, then the spec's.
pub(crate) fn include_list(spec: &DistroSpec) -> String {
    let mut all: Vec<String> = BASE_PACKAGES.iter().map(|p| p.to_string()).collect();
    for p in spec.package_set() {
        if !all.iter().any(|a| a == p.as_str()) {
            all.push(p.to_string());
        }
    }
    all.join(",")
}

/// The archive lines (`deb URI SUITE main`).
pub(crate) fn sources(spec: &DistroSpec) -> Vec<String> {
    let suite = spec.distro.suite();
    vec![
        format!("deb {} {suite} main", spec.mirror),
        format!("deb {} {suite}-updates main", spec.mirror),
        format!("deb {} {suite}-security main", spec.security_mirror),
        format!("deb {} {suite}-backports main", spec.mirror),
    ]
}

fn mmdebstrap(spec: &DistroSpec, staging: &Path, out: &Path) -> Result<(), DistroError> {
    let staging = shell_quote(&staging.to_string_lossy());
    let mut cmd = Cmd::new("mmdebstrap")
        .args(["--mode=root", "--variant=apt", "--format=tar", "--quiet"])
        .arg(format!("--hook-dir={MERGED_USR_HOOK}"))
        .arg(format!("--setup-hook=cp -a {staging}/. \"$1\"/"))
        .arg(format!("--include={}", include_list(spec)));
    for opt in DPKG_OPTIONS {
        cmd = cmd.arg(format!("--dpkgopt={opt}"));
    }
    cmd.arg(spec.distro.suite())
        .arg(out)
        .args(sources(spec))
        .run()
        .map(drop)
}

/// `'text'` for sh, with embedded quotes escaped.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The kernel found in `root/boot`: its release, after checking it has
/// what the guest agent needs (Linux >= 6.6, BTF, BPF syscall and JIT).
pub(crate) fn check_kernel(root: &Path) -> Result<String, DistroError> {
    let boot = root.join("boot");
    let mut configs = Vec::new();
    for entry in fs::read_dir(&boot).map_err(DistroError::io(&boot))? {
        let entry = entry.map_err(DistroError::io(&boot))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(release) = name.strip_prefix("config-") {
            configs.push((release.to_string(), entry.path()));
        }
    }
    let [(release, config)] = configs.as_slice() else {
        return Err(DistroError::KernelCount(configs.len()));
    };
    let text = fs::read_to_string(config).map_err(DistroError::io(config))?;
    let missing = kernel_missing(release, &text);
    if missing.is_empty() {
        Ok(release.clone())
    } else {
        Err(DistroError::KernelUnfit {
            version: release.clone(),
            missing: missing.join(", "),
        })
    }
}

/// What a kernel (release, config text) lacks for the guest agent.
fn kernel_missing(release: &str, config: &str) -> Vec<String> {
    let mut missing = Vec::new();
    let mut nums = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let (major, minor) = (nums.next().unwrap_or(0), nums.next().unwrap_or(0));
    if (major, minor) < (6, 6) {
        missing.push("Linux >= 6.6 (update_socket_protocol)".to_string());
    }
    for option in [
        "CONFIG_DEBUG_INFO_BTF",
        "CONFIG_BPF_SYSCALL",
        "CONFIG_BPF_JIT",
    ] {
        if !config.lines().any(|l| l == format!("{option}=y")) {
            missing.push(option.to_string());
        }
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::super::spec::Agent;
    use super::*;

    #[test]
    fn kernels_are_checked_for_version_and_btf() {
        let good = "CONFIG_DEBUG_INFO_BTF=y\nCONFIG_BPF_SYSCALL=y\nCONFIG_BPF_JIT=y\n";
        assert!(kernel_missing("6.12.95+deb12-cloud-amd64", good).is_empty());
        let old = kernel_missing("6.1.0-57-cloud-amd64", good);
        assert_eq!(old.len(), 1, "{old:?}");
        let no_btf = kernel_missing(
            "6.12.95+deb12-cloud-amd64",
            "# CONFIG_DEBUG_INFO_BTF is not set\nCONFIG_BPF_SYSCALL=y\nCONFIG_BPF_JIT=y\n",
        );
        assert_eq!(no_btf, ["CONFIG_DEBUG_INFO_BTF"]);
    }

    #[test]
    fn check_kernel_wants_exactly_one() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("boot")).unwrap();
        assert!(matches!(
            check_kernel(dir.path()),
            Err(DistroError::KernelCount(0))
        ));
        fs::write(
            dir.path().join("boot/config-6.12.1-cloud-amd64"),
            "CONFIG_DEBUG_INFO_BTF=y\nCONFIG_BPF_SYSCALL=y\nCONFIG_BPF_JIT=y\n",
        )
        .unwrap();
        assert_eq!(check_kernel(dir.path()).unwrap(), "6.12.1-cloud-amd64");
    }

    #[test]
    fn the_package_list_adds_requested_packages_once() {
        let spec = DistroSpec::debian12(
            vec!["nginx-light".parse().unwrap(), "udev".parse().unwrap()],
            Agent::None,
            PathBuf::from("/c"),
        );
        let list = include_list(&spec);
        assert!(list.starts_with("systemd-sysv,udev,"));
        assert!(list.ends_with(",nginx-light"));
        assert_eq!(list.matches("udev").count(), 1);
        let s = sources(&spec);
        assert!(s.iter().any(|l| l.ends_with("bookworm-backports main")));
        assert!(
            s.iter()
                .any(|l| l.contains("debian-security bookworm-security"))
        );
    }

    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(shell_quote("/a b/c'd"), r"'/a b/c'\''d'");
    }
}
