//! The build cache: finished images (`images/<key>.qcow2` with
//! `<key>.json`) and root file system tarballs (`rootfs/<key>.tar`), each
//! written under an exclusive `flock` on `locks/<key>.lock`, so parallel
//! builds of the same inputs build once and the others wait, then copy.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::DistroError;
use super::spec::{DistroSpec, hex};

/// Layout of a cache directory.
#[derive(Debug, Clone)]
pub(crate) struct CacheDir {
    root: PathBuf,
}

impl CacheDir {
    /// Creates the directory layout if missing.
    pub(crate) fn open(root: &Path) -> Result<CacheDir, DistroError> {
        let cache = CacheDir {
            root: root.to_path_buf(),
        };
        for dir in [cache.images(), cache.rootfs(), cache.locks(), cache.work()] {
            fs::create_dir_all(&dir).map_err(DistroError::io(&dir))?;
        }
        Ok(cache)
    }

    /// Finished images.
    pub(crate) fn images(&self) -> PathBuf {
        self.root.join("images")
    }

    /// Root file system tarballs.
    pub(crate) fn rootfs(&self) -> PathBuf {
        self.root.join("rootfs")
    }

    fn locks(&self) -> PathBuf {
        self.root.join("locks")
    }

    /// Scratch space of running builds (same file system as the results,
    /// so they are renamed into place).
    pub(crate) fn work(&self) -> PathBuf {
        self.root.join("work")
    }

    /// Takes the exclusive lock `name`, waiting for other holders.
    pub(crate) fn lock(&self, name: &str) -> Result<KeyLock, DistroError> {
        let path = self.locks().join(format!("{name}.lock"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(DistroError::io(&path))?;
        loop {
            // SAFETY: `file` owns an open descriptor for the whole call;
            // flock only locks it and touches no memory of ours.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                return Ok(KeyLock { _file: file });
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(DistroError::Io { path, source: err });
            }
        }
    }
}

/// An exclusive lock, released when dropped (the descriptor is closed).
#[derive(Debug)]
pub(crate) struct KeyLock {
    _file: File,
}

/// What the cache records about a finished image (`images/<key>.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The image key.
    pub key: String,
    /// The inputs it was built from.
    pub spec: DistroSpec,
    /// SHA-256 of the guest agent package, if any.
    pub agent_sha256: Option<String>,
    /// Kernel release installed in the image.
    pub kernel: String,
    /// Units masked in the image.
    pub masked_units: Vec<String>,
    /// Virtual size of the disk.
    pub virtual_bytes: u64,
    /// Size of the qcow2 file.
    pub file_bytes: u64,
    /// SHA-256 of the qcow2 file.
    pub sha256: String,
    /// How long the build took, in seconds.
    pub build_seconds: f64,
}

impl ImageRecord {
    /// Reads `images/<key>.json`.
    pub(crate) fn load(path: &Path) -> Result<ImageRecord, DistroError> {
        let text = fs::read(path).map_err(DistroError::io(path))?;
        serde_json::from_slice(&text).map_err(|source| DistroError::Metadata {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Writes it atomically.
    pub(crate) fn save(&self, path: &Path) -> Result<(), DistroError> {
        let json = serde_json::to_vec_pretty(self).map_err(|source| DistroError::Metadata {
            path: path.to_path_buf(),
            source,
        })?;
        let tmp = tmp_path(path);
        fs::write(&tmp, json)
            .and_then(|()| fs::rename(&tmp, path))
            .map_err(|source| {
                let _ = fs::remove_file(&tmp);
                DistroError::Io {
                    path: path.to_path_buf(),
                    source,
                }
            })
    }
}

/// `DIR/.NAME.tmp-PID`: where `path` is written before the rename.
pub(crate) fn tmp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Copies `from` to `to` (through a temporary file and a rename) and
/// returns the bytes copied and their SHA-256.
pub(crate) fn copy_hashed(from: &Path, to: &Path) -> Result<(u64, String), DistroError> {
    if let Some(parent) = to.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(DistroError::io(parent))?;
    }
    let tmp = tmp_path(to);
    let result = (|| -> Result<(u64, String), DistroError> {
        let mut src = File::open(from).map_err(DistroError::io(from))?;
        let mut dst = File::create(&tmp).map_err(DistroError::io(&tmp))?;
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = src.read(&mut buf).map_err(DistroError::io(from))?;
            if n == 0 {
                break;
            }
            ctx.update(&buf[..n]);
            dst.write_all(&buf[..n]).map_err(DistroError::io(&tmp))?;
            total += n as u64;
        }
        dst.sync_all().map_err(DistroError::io(&tmp))?;
        fs::rename(&tmp, to).map_err(DistroError::io(to))?;
        Ok((total, hex(ctx.finish().as_ref())))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// SHA-256 of a file, in hex.
pub(crate) fn file_sha256(path: &Path) -> io::Result<String> {
    let mut f = File::open(path)?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(hex(ctx.finish().as_ref()));
        }
        ctx.update(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    #[test]
    fn copies_with_the_right_hash_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("a");
        fs::write(&from, b"abc").unwrap();
        let to = dir.path().join("sub/b");
        let (bytes, sha) = copy_hashed(&from, &to).unwrap();
        assert_eq!(bytes, 3);
        // SHA-256("abc")
        assert_eq!(
            sha,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(file_sha256(&to).unwrap(), sha);
        let names: Vec<_> = fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["b"]);
    }

    #[test]
    fn the_lock_excludes_a_second_holder_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CacheDir::open(dir.path()).unwrap();
        let inside = Arc::new(AtomicU32::new(0));
        let max = Arc::new(AtomicU32::new(0));
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let (cache, inside, max) = (cache.clone(), inside.clone(), max.clone());
                std::thread::spawn(move || {
                    let _lock = cache.lock("k").unwrap();
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    max.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(50));
                    inside.fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(max.load(Ordering::SeqCst), 1, "two holders at once");
    }

    #[test]
    fn records_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let record = ImageRecord {
            key: "k".into(),
            spec: DistroSpec::debian12(vec![], super::super::Agent::None, dir.path().into()),
            agent_sha256: None,
            kernel: "6.12.95+deb12-cloud-amd64".into(),
            masked_units: vec!["apt-daily.timer".into()],
            virtual_bytes: 2 << 30,
            file_bytes: 1,
            sha256: "00".into(),
            build_seconds: 1.5,
        };
        let path = dir.path().join("k.json");
        record.save(&path).unwrap();
        assert_eq!(ImageRecord::load(&path).unwrap(), record);
    }
}
