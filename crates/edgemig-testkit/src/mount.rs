//! A small tmpfs mounted over a directory for a test (to make a file
//! system run out of space for real), unmounted on drop.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs mounted at a directory until dropped.
#[derive(Debug)]
pub struct SmallTmpfs {
    at: PathBuf,
}

impl SmallTmpfs {
    /// Mounts a tmpfs of `mib` MiB over `at` (which must exist).
    pub fn mount(at: &Path, mib: u32) -> Self {
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "edgemig-test"])
            .arg(at)
            .status()
            .expect("run mount");
        assert!(status.success(), "mount tmpfs at {}", at.display());
        Self {
            at: at.to_path_buf(),
        }
    }
}

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.at).status();
    }
}
