//! JSON files written atomically (temp file + rename) and an exclusive
//! `flock` on a lock file, for the embedded directory.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::DirectoryError;

/// Distinguishes temp files of one process.
static COUNTER: AtomicU64 = AtomicU64::new(0);

fn io_err(action: &'static str, path: &Path, source: io::Error) -> DirectoryError {
    DirectoryError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Creates `dir` and its parents.
pub(crate) fn create_dir(dir: &Path) -> Result<(), DirectoryError> {
    fs::create_dir_all(dir).map_err(|e| io_err("create directory", dir, e))
}

/// A string unique on this machine: pid, time and a counter.
pub(crate) fn unique_token() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}-{nanos}-{n}", std::process::id())
}

/// Writes `value` as JSON to `path`: a temp file in the same directory,
/// flushed to disk, then renamed over `path`, so readers see the old or the
/// new record, never a partial one.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), DirectoryError> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|source| DirectoryError::Corrupt {
        what: path.display().to_string(),
        source,
    })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", unique_token()));
    let result = (|| {
        let mut file = File::create(&tmp).map_err(|e| io_err("create", &tmp, e))?;
        file.write_all(&bytes)
            .map_err(|e| io_err("write", &tmp, e))?;
        file.sync_all().map_err(|e| io_err("sync", &tmp, e))?;
        fs::rename(&tmp, path).map_err(|e| io_err("rename into place", path, e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Reads a JSON record; `None` when the file does not exist.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, DirectoryError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("read", path, e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| DirectoryError::Corrupt {
            what: path.display().to_string(),
            source,
        })
}

/// Removes a file; a missing file is fine.
pub(crate) fn remove(path: &Path) -> Result<(), DirectoryError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("remove", path, e)),
    }
}

/// The `*.json` records of a directory (temp files skipped), sorted by path.
pub(crate) fn list_json(dir: &Path) -> Result<Vec<PathBuf>, DirectoryError> {
    let entries = fs::read_dir(dir).map_err(|e| io_err("list", dir, e))?;
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_err("list", dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !name.starts_with('.') && name.ends_with(".json") {
            paths.push(entry.path());
        }
    }
    paths.sort();
    Ok(paths)
}

/// An exclusive `flock` held until dropped (closing the file releases it).
#[derive(Debug)]
pub(crate) struct FileLock {
    _file: File,
}

impl FileLock {
    /// Blocks until this process holds the exclusive lock on `path`
    /// (created when missing).
    pub(crate) fn acquire(path: &Path) -> Result<Self, DirectoryError> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| io_err("open lock file", path, e))?;
        loop {
            // SAFETY: `file` owns a valid open descriptor for the whole call;
            // flock does not touch memory.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                return Ok(Self { _file: file });
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(io_err("lock", path, err));
            }
        }
    }
}
