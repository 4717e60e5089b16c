//! Bootable disk images of a real distribution (Debian 12), built from
//! Debian packages: `edgemig image build --distro debian12`.
//!
//! One qcow2 file boots under SeaBIOS and under OVMF: GPT with a BIOS boot
//! partition, an EFI system partition and an ext4 root ([`disk`]). The
//! root file system comes from `mmdebstrap` ([`rootfs`]) with the
//! bookworm-backports cloud kernel; the system is configured for edgemig
//! VMs ([`configure`]: the guest agent's .deb, or DHCP without it) and GRUB
//! is installed from the guest's own packages in a chroot ([`bootloader`]).
//! Builds need root (loop devices, mounts) and are cached: the finished
//! image by a key over every input, the root file system tarball by the
//! package set ([`cache`]); parallel builds of the same inputs wait for
//! each other (flock) and build once. See `docs/images.md`.

mod bootloader;
mod cache;
mod chroot;
mod cmd;
mod configure;
pub mod disk;
mod error;
mod loopdev;
mod mountns;
mod qcow2;
mod rootfs;
mod spec;

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

pub use bootloader::KERNEL_CMDLINE;
pub use cache::ImageRecord;
pub use configure::{DHCP_NETWORK, HOSTNAME, MASKED_UNITS};
pub use error::DistroError;
pub use qcow2::virtual_size;
pub use rootfs::BASE_PACKAGES;
pub use spec::{
    Agent, BUILDER_VERSION, DEFAULT_MIRROR, DEFAULT_SECURITY_MIRROR, DEFAULT_SIZE_BYTES, Distro,
    DistroSpec, MAX_SIZE_BYTES, MIN_SIZE_BYTES, PackageName, image_key, rootfs_key,
};

use cache::{CacheDir, copy_hashed, file_sha256};
use chroot::Chroot;
use cmd::Cmd;
use disk::DiskIds;
use loopdev::{LoopDevice, Mount};

/// What [`build`] is doing; reported as each step starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildStep {
    /// Waiting for another build of the same image to finish.
    Lock,
    /// Making (or taking from the cache) the root file system tarball.
    RootFs,
    /// Partitioning, formatting, unpacking the root file system.
    Disk,
    /// Host name, fstab, masks, guest agent or DHCP.
    Configure,
    /// GRUB for BIOS and UEFI.
    Bootloader,
    /// Raw disk to compressed qcow2.
    Convert,
    /// Copying the cached image to the output path.
    Copy,
}

impl fmt::Display for BuildStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BuildStep::Lock => "waiting for the cache",
            BuildStep::RootFs => "root file system (mmdebstrap)",
            BuildStep::Disk => "disk: partitions, file systems, unpacking",
            BuildStep::Configure => "system configuration",
            BuildStep::Bootloader => "GRUB for BIOS and UEFI",
            BuildStep::Convert => "qcow2",
            BuildStep::Copy => "copying from the cache",
        })
    }
}

/// What [`build`] made. Serialized as JSON by the CLI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistroImage {
    /// The qcow2 file written.
    pub path: PathBuf,
    /// Its size in bytes.
    pub file_bytes: u64,
    /// The disk's virtual size in bytes.
    pub virtual_bytes: u64,
    /// SHA-256 of the file.
    pub sha256: String,
    /// Whether the image came from the cache.
    pub cache_hit: bool,
    /// Wall-clock seconds of this call.
    pub seconds: f64,
    /// The cache key (a hash of every input).
    pub key: String,
    /// The distribution.
    pub distro: Distro,
    /// Kernel release in the image.
    pub kernel: String,
    /// Whether the guest agent is installed.
    pub agent: bool,
    /// Units masked in the image.
    pub masked_units: Vec<String>,
}

/// Builds the image of `spec` into `out` (a qcow2 file, replaced
/// atomically), or copies it from the cache when the same inputs were
/// built before. `progress` hears of every step.
pub fn build(
    spec: &DistroSpec,
    out: &Path,
    progress: &mut (dyn FnMut(BuildStep) + Send),
) -> Result<DistroImage, DistroError> {
    let started = Instant::now();
    let size = spec.checked_size()?;
    let agent_sha256 = match &spec.agent {
        Agent::Deb(path) => {
            Some(
                file_sha256(path).map_err(|source| DistroError::AgentDebMissing {
                    path: path.clone(),
                    source,
                })?,
            )
        }
        Agent::None => None,
    };
    let cache = CacheDir::open(&spec.cache_dir)?;
    let key = image_key(spec, agent_sha256.as_deref(), size);
    let cached = cache.images().join(format!("{key}.qcow2"));
    let record_path = cache.images().join(format!("{key}.json"));

    progress(BuildStep::Lock);
    let lock = cache.lock(&format!("image-{key}"))?;
    let (record, cache_hit) = if cached.is_file() && record_path.is_file() {
        (ImageRecord::load(&record_path)?, true)
    } else {
        require_root()?;
        let record = build_uncached(spec, &cache, &key, agent_sha256, size, &cached, progress)?;
        record.save(&record_path)?;
        (record, false)
    };
    drop(lock);

    progress(BuildStep::Copy);
    let (file_bytes, sha256) = copy_hashed(&cached, out)?;
    if sha256 != record.sha256 {
        let _ = fs::remove_file(out);
        return Err(DistroError::Check(format!(
            "cached image {} has SHA-256 {sha256}, its record says {}; delete both files and build again",
            cached.display(),
            record.sha256
        )));
    }
    Ok(DistroImage {
        path: out.to_path_buf(),
        file_bytes,
        virtual_bytes: record.virtual_bytes,
        sha256,
        cache_hit,
        seconds: started.elapsed().as_secs_f64(),
        key,
        distro: spec.distro,
        kernel: record.kernel,
        agent: record.agent_sha256.is_some(),
        masked_units: record.masked_units,
    })
}

fn require_root() -> Result<(), DistroError> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        Ok(())
    } else {
        Err(DistroError::NotRoot)
    }
}

/// Builds the image into the cache at `cached` and returns its record.
fn build_uncached(
    spec: &DistroSpec,
    cache: &CacheDir,
    key: &str,
    agent_sha256: Option<String>,
    size: u64,
    cached: &Path,
    progress: &mut (dyn FnMut(BuildStep) + Send),
) -> Result<ImageRecord, DistroError> {
    let started = Instant::now();
    // Declared first, dropped last: every guard below is gone before the
    // scratch directory is removed.
    let work = tempfile::Builder::new()
        .prefix(&format!("image-{key}-"))
        .tempdir_in(cache.work())
        .map_err(DistroError::io(cache.work()))?;

    progress(BuildStep::RootFs);
    // mmdebstrap mounts /dev, /proc and /sys in its chroot: also privately.
    let (tarball, _) = mountns::in_private_namespace(|| rootfs::tarball(spec, cache))?;

    progress(BuildStep::Disk);
    let ids = DiskIds::random()?;
    let raw = work.path().join("disk.raw");
    disk::create(&raw, size, &ids)?;
    let mnt = work.path().join("root");
    let (kernel, masked_units) =
        mountns::in_private_namespace(|| populate(spec, &raw, &tarball, &mnt, &ids, progress))?;

    progress(BuildStep::Convert);
    let tmp = cache
        .images()
        .join(format!(".{key}.tmp-{}.qcow2", std::process::id()));
    let converted = qcow2::convert(&raw, &tmp).and_then(|()| {
        let virtual_bytes = qcow2::virtual_size(&tmp)?;
        let file_bytes = fs::metadata(&tmp).map_err(DistroError::io(&tmp))?.len();
        let sha256 = file_sha256(&tmp).map_err(DistroError::io(&tmp))?;
        fs::rename(&tmp, cached).map_err(DistroError::io(cached))?;
        Ok((virtual_bytes, file_bytes, sha256))
    });
    let (virtual_bytes, file_bytes, sha256) = converted.inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })?;
    Ok(ImageRecord {
        key: key.to_string(),
        spec: spec.clone(),
        agent_sha256,
        kernel,
        masked_units,
        virtual_bytes,
        file_bytes,
        sha256,
        build_seconds: started.elapsed().as_secs_f64(),
    })
}

/// Checks the unmounted root file system is closed and consistent: no
/// journal left to replay (it would be if something still had it mounted)
/// and a clean read-only fsck.
fn check_closed(partition: &Path) -> Result<(), DistroError> {
    let header = Cmd::new("dumpe2fs").arg("-h").arg(partition).run()?;
    if header
        .lines()
        .any(|l| l.starts_with("Filesystem features:") && l.contains("needs_recovery"))
    {
        return Err(DistroError::Check(format!(
            "{} is still in use after unmounting it (needs journal recovery)",
            partition.display()
        )));
    }
    Cmd::new("e2fsck")
        .args(["-f", "-n"])
        .arg(partition)
        .run()
        .map(drop)
}

/// Formats the partitioned `raw` disk, unpacks the root file system,
/// configures it and installs GRUB; returns the kernel release and the
/// masked units. Every loop device and mount is gone when it returns.
fn populate(
    spec: &DistroSpec,
    raw: &Path,
    tarball: &Path,
    mnt: &Path,
    ids: &DiskIds,
    progress: &mut (dyn FnMut(BuildStep) + Send),
) -> Result<(String, Vec<String>), DistroError> {
    let dev = LoopDevice::attach(raw, disk::ROOT_PARTITION)?;
    disk::format(
        &dev.partition(disk::ESP_PARTITION),
        &dev.partition(disk::ROOT_PARTITION),
        ids,
    )?;
    fs::create_dir_all(mnt).map_err(DistroError::io(mnt))?;
    let root = Mount::new(dev.partition(disk::ROOT_PARTITION), mnt, &[])?;
    Cmd::new("tar")
        .args(["--extract", "--preserve-permissions", "--numeric-owner"])
        .args(["--xattrs", "--xattrs-include=*", "--file"])
        .arg(tarball)
        .arg("--directory")
        .arg(mnt)
        .run()?;
    let kernel = rootfs::check_kernel(mnt)?;
    let chroot = Chroot::enter(mnt, &dev, ids)?;

    progress(BuildStep::Configure);
    let masked = configure::system(&chroot, ids)?;
    match &spec.agent {
        Agent::Deb(deb) => configure::install_agent(&chroot, deb)?,
        Agent::None => configure::network_dhcp(&chroot)?,
    }

    progress(BuildStep::Bootloader);
    bootloader::install(&chroot, &dev, ids)?;
    configure::finish(&chroot)?;
    chroot.leave()?;
    root.unmount()?;
    check_closed(&dev.partition(disk::ROOT_PARTITION))?;
    dev.detach()?;
    Ok((kernel, masked))
}
