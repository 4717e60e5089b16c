//! Cgroup (v2) ids as the BPF helper `bpf_get_current_cgroup_id()` reports
//! them: the inode number of the cgroup's directory in the cgroup2 file
//! system (the kernfs node id, on 64-bit kernels), and where that file
//! system is mounted (`/sys/fs/cgroup` on a unified host, often
//! `/sys/fs/cgroup/unified` on a hybrid one).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Errors resolving cgroups.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// The cgroup directory could not be read.
    #[error("Cannot read cgroup {path}")]
    Stat {
        /// Directory.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The path is not on a cgroup2 file system.
    #[error("{0} is not a cgroup v2 directory")]
    NotCgroup2(String),
    /// No cgroup2 file system is mounted.
    #[error("No cgroup v2 file system is mounted")]
    NoCgroup2,
}

/// `CGROUP2_SUPER_MAGIC`.
const CGROUP2_MAGIC: i64 = 0x6367_7270;

/// Whether `path` lies on a cgroup2 file system.
pub fn is_cgroup2(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: an all-zero statfs is a valid value of this plain C struct.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid C string and `st` a writable statfs, both
    // alive for the call.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    rc == 0 && st.f_type as i64 == CGROUP2_MAGIC
}

/// The id of the cgroup whose directory is `dir`.
pub fn cgroup_id(dir: &Path) -> Result<u64, CgroupError> {
    let meta = std::fs::metadata(dir).map_err(|source| CgroupError::Stat {
        path: dir.display().to_string(),
        source,
    })?;
    if !meta.is_dir() || !is_cgroup2(dir) {
        return Err(CgroupError::NotCgroup2(dir.display().to_string()));
    }
    Ok(meta.ino())
}

/// The mount point of the first cgroup2 file system in a
/// `/proc/self/mountinfo` text.
pub fn cgroup2_mount_in(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let fstype = right.split_whitespace().next()?;
        if fstype != "cgroup2" {
            return None;
        }
        let mount_point = left.split_whitespace().nth(4)?;
        Some(PathBuf::from(unescape(mount_point)))
    })
}

/// Undoes mountinfo's octal escapes (`\040` for a space, …).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && let Some(v) = b
                .get(i + 1..i + 4)
                .and_then(|t| std::str::from_utf8(t).ok())
                .and_then(|t| u8::from_str_radix(t, 8).ok())
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Where the cgroup2 file system is mounted on this machine.
pub fn cgroup2_mount() -> Result<PathBuf, CgroupError> {
    let text =
        std::fs::read_to_string("/proc/self/mountinfo").map_err(|source| CgroupError::Stat {
            path: "/proc/self/mountinfo".into(),
            source,
        })?;
    cgroup2_mount_in(&text).ok_or(CgroupError::NoCgroup2)
}

/// The cgroup (v2) path of the calling process, from `/proc/self/cgroup`
/// (the `0::PATH` line), relative to the cgroup2 mount.
pub fn own_cgroup() -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cgroup2_in_mountinfo() {
        let hybrid = "\
25 30 0:23 / /sys rw,nosuid - sysfs sysfs rw
30 25 0:26 / /sys/fs/cgroup ro - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw
32 30 0:28 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu
";
        assert_eq!(
            cgroup2_mount_in(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let unified =
            "29 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            cgroup2_mount_in(unified),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        let spaced = r"29 23 0:26 / /mnt/my\040cg rw - cgroup2 none rw";
        assert_eq!(cgroup2_mount_in(spaced), Some(PathBuf::from("/mnt/my cg")));
        assert_eq!(cgroup2_mount_in("garbage\n\n - \n"), None);
    }

    #[test]
    fn ids_are_directory_inodes_on_cgroup2_only() {
        let root = cgroup2_mount().expect("this host mounts cgroup2");
        assert!(is_cgroup2(&root));
        let id = cgroup_id(&root).unwrap();
        assert!(id > 0);
        assert!(matches!(
            cgroup_id(Path::new("/proc")),
            Err(CgroupError::NotCgroup2(_))
        ));
        assert!(matches!(
            cgroup_id(&root.join("edgemig-no-such-cgroup")),
            Err(CgroupError::Stat { .. })
        ));
        assert!(own_cgroup().is_some_and(|p| p.starts_with('/')));
    }
}
