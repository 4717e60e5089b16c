//! The guest's own tools run in a chroot of the mounted root file system
//! (dpkg, systemctl, grub-install, update-grub). The chroot gets a private
//! `/dev` (a tmpfs holding the basic nodes, the loop device and its
//! partitions, and the `/dev/disk/by-uuid` links that udev would make),
//! `/proc` and a bind mount of `/sys`, all unmounted when the guard drops.
//! The host's `/dev` is never exposed to the guest's scripts.

use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};

use super::cmd::Cmd;
use super::disk::DiskIds;
use super::error::DistroError;
use super::loopdev::{LoopDevice, Mount};

/// Character devices of the private `/dev`: name, major, minor.
const CHAR_NODES: &[(&str, u32, u32)] = &[
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// The mounts that make `root` usable as a chroot; undone in reverse order.
#[derive(Debug)]
pub(crate) struct Chroot {
    root: PathBuf,
    mounts: Vec<Mount>,
}

impl Chroot {
    /// Prepares `root` (the mounted root file system of the disk on `dev`).
    pub(crate) fn enter(
        root: &Path,
        dev: &LoopDevice,
        ids: &DiskIds,
    ) -> Result<Chroot, DistroError> {
        let mut chroot = Chroot {
            root: root.to_path_buf(),
            mounts: Vec::new(),
        };
        let devdir = root.join("dev");
        chroot.mounts.push(Mount::new(
            "edgemig-dev",
            &devdir,
            &["-t", "tmpfs", "-o", "mode=0755,size=1m,nosuid"],
        )?);
        for &(name, major, minor) in CHAR_NODES {
            mknod(&devdir.join(name), 'c', major, minor, "0666")?;
        }
        let disk_name = dev.name();
        let mut nodes = vec![(disk_name.clone(), dev.path().to_path_buf())];
        for i in 1..=3 {
            nodes.push((format!("{disk_name}p{i}"), dev.partition(i)));
        }
        for (name, host) in &nodes {
            let rdev = std::fs::metadata(host)
                .map_err(DistroError::io(host))?
                .rdev();
            mknod(
                &devdir.join(name),
                'b',
                dev_major(rdev),
                dev_minor(rdev),
                "0600",
            )?;
        }
        let by_uuid = devdir.join("disk/by-uuid");
        std::fs::create_dir_all(&by_uuid).map_err(DistroError::io(&by_uuid))?;
        for (uuid, part) in [
            (ids.root_fs.clone(), super::disk::ROOT_PARTITION),
            (ids.esp_fs_uuid(), super::disk::ESP_PARTITION),
        ] {
            let link = by_uuid.join(uuid);
            symlink(format!("../../{disk_name}p{part}"), &link).map_err(DistroError::io(&link))?;
        }
        chroot
            .mounts
            .push(Mount::new("proc", &root.join("proc"), &["-t", "proc"])?);
        chroot
            .mounts
            .push(Mount::new("/sys", &root.join("sys"), &["--bind"])?);
        Ok(chroot)
    }

    /// The root directory.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// `chroot ROOT PROGRAM` with a clean environment.
    pub(crate) fn cmd(&self, program: &str) -> Cmd {
        Cmd::chroot(&self.root, program)
    }

    /// Unmounts everything, reporting the first failure.
    pub(crate) fn leave(mut self) -> Result<(), DistroError> {
        let mut first = Ok(());
        while let Some(m) = self.mounts.pop() {
            let r = m.unmount();
            if first.is_ok() {
                first = r;
            }
        }
        first
    }
}

impl Drop for Chroot {
    fn drop(&mut self) {
        while let Some(m) = self.mounts.pop() {
            drop(m);
        }
    }
}

fn mknod(path: &Path, kind: char, major: u32, minor: u32, mode: &str) -> Result<(), DistroError> {
    Cmd::new("mknod")
        .args(["-m", mode])
        .arg(path)
        .arg(kind.to_string())
        .arg(major.to_string())
        .arg(minor.to_string())
        .run()
        .map(drop)
}

/// Major number of a Linux `dev_t`.
fn dev_major(dev: u64) -> u32 {
    (((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff)) as u32
}

/// Minor number of a Linux `dev_t`.
fn dev_minor(dev: u64) -> u32 {
    ((dev & 0xff) | ((dev >> 12) & !0xff)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_numbers_split_like_glibc() {
        // /dev/null is 1:3, a loop partition 259:2, a large minor 7:300.
        for (major, minor) in [(1u64, 3u64), (259, 2), (7, 300), (4095, 1 << 19)] {
            let dev = (minor & 0xff)
                | ((major & 0xfff) << 8)
                | ((minor & !0xff) << 12)
                | ((major & !0xfff) << 32);
            assert_eq!(
                (dev_major(dev), dev_minor(dev)),
                (major as u32, minor as u32)
            );
        }
        let null = std::fs::metadata("/dev/null").unwrap().rdev();
        assert_eq!((dev_major(null), dev_minor(null)), (1, 3));
    }
}
