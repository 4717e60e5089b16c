//! Guards for what a build attaches and mounts on the host: a loop device
//! over the raw disk (with its partitions) and mounts. Dropping a guard
//! undoes it, also when the build fails half-way; the success path calls
//! `detach`/`unmount` to see errors.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::cmd::Cmd;
use super::error::DistroError;

/// How long partition device nodes may take to appear.
const PARTITION_WAIT: Duration = Duration::from_secs(10);

/// A loop device over a disk image file, with its partitions registered.
#[derive(Debug)]
pub(crate) struct LoopDevice {
    /// `/dev/loopN`.
    path: PathBuf,
    attached: bool,
}

impl LoopDevice {
    /// Attaches `file` with partition scanning and waits until partitions
    /// `1..=partitions` have device nodes. Some kernels do not scan loop
    /// devices (loop `max_part=0`): then the partitions are added with
    /// `partx`.
    pub(crate) fn attach(file: &Path, partitions: u32) -> Result<LoopDevice, DistroError> {
        let out = Cmd::new("losetup")
            .args(["--find", "--show", "--partscan"])
            .arg(file)
            .run()?;
        let dev = LoopDevice {
            path: PathBuf::from(out.trim()),
            attached: true,
        };
        let name = dev.name();
        let in_sysfs = |i: u32| Path::new(&format!("/sys/block/{name}/{name}p{i}")).exists();
        if !(1..=partitions).all(in_sysfs) {
            Cmd::new("partx").arg("--add").arg(&dev.path).run()?;
        }
        let deadline = Instant::now() + PARTITION_WAIT;
        for i in 1..=partitions {
            let p = dev.partition(i);
            while !p.exists() {
                if Instant::now() > deadline {
                    return Err(DistroError::PartitionMissing { path: p });
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(dev)
    }

    /// `/dev/loopN`.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// `loopN`.
    pub(crate) fn name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// `/dev/loopNpI`.
    pub(crate) fn partition(&self, i: u32) -> PathBuf {
        PathBuf::from(format!("{}p{i}", self.path.display()))
    }

    /// Removes the partitions and detaches the device.
    pub(crate) fn detach(mut self) -> Result<(), DistroError> {
        self.attached = false;
        let _ = Cmd::new("partx").arg("--delete").arg(&self.path).run();
        Cmd::new("losetup")
            .arg("--detach")
            .arg(&self.path)
            .run()
            .map(drop)
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        if self.attached {
            let _ = Cmd::new("partx").arg("--delete").arg(&self.path).run();
            let _ = Cmd::new("losetup").arg("--detach").arg(&self.path).run();
        }
    }
}

/// A mount point, unmounted when dropped (lazily if it is busy).
#[derive(Debug)]
pub(crate) struct Mount {
    target: PathBuf,
    mounted: bool,
}

impl Mount {
    /// `mount [ARGS...] SOURCE TARGET`.
    pub(crate) fn new(
        source: impl AsRef<std::ffi::OsStr>,
        target: &Path,
        args: &[&str],
    ) -> Result<Mount, DistroError> {
        Cmd::new("mount").args(args).arg(source).arg(target).run()?;
        Ok(Mount {
            target: target.to_path_buf(),
            mounted: true,
        })
    }

    /// Unmounts, reporting failure.
    pub(crate) fn unmount(mut self) -> Result<(), DistroError> {
        self.mounted = false;
        Cmd::new("umount").arg(&self.target).run().map(drop)
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if self.mounted && Cmd::new("umount").arg(&self.target).run().is_err() {
            let _ = Cmd::new("umount").arg("--lazy").arg(&self.target).run();
        }
    }
}
