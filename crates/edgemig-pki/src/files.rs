//! Writing PEM files: atomically, and private keys readable by the owner only.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A file operation that failed, with the path it was about.
#[derive(Debug, thiserror::Error)]
#[error("Cannot {action} {}", path.display())]
pub struct FileError {
    /// What was being done ("write", "read", "create directory").
    pub action: &'static str,
    /// The file or directory concerned.
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

impl FileError {
    pub(crate) fn new(action: &'static str, path: &Path, source: io::Error) -> Self {
        Self {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Mode of public files (certificates).
pub(crate) const PUBLIC: u32 = 0o644;
/// Mode of private keys.
pub(crate) const PRIVATE: u32 = 0o600;

/// Creates `dir` and its parents.
pub(crate) fn create_dir(dir: &Path) -> Result<(), FileError> {
    fs::create_dir_all(dir).map_err(|e| FileError::new("create directory", dir, e))
}

/// Reads a whole file.
pub(crate) fn read(path: &Path) -> Result<Vec<u8>, FileError> {
    fs::read(path).map_err(|e| FileError::new("read", path, e))
}

/// Writes `contents` to `path` with `mode`, atomically: a reader sees the old
/// file or the new one, never half of it, and a key is never world readable,
/// not even for a moment.
pub(crate) fn write(path: &Path, contents: &[u8], mode: u32) -> Result<(), FileError> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let result = (|| {
        let _ = fs::remove_file(&tmp);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        // The umask may have removed bits we want; it never adds any.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|e| FileError::new("write", path, e))
}

/// Copies `from` to `to` with `mode`.
pub(crate) fn copy(from: &Path, to: &Path, mode: u32) -> Result<(), FileError> {
    write(to, &read(from)?, mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_are_0600_even_when_replacing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key.pem");
        fs::write(&path, "old").expect("seed");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).expect("chmod");
        write(&path, b"new", PRIVATE).expect("write");
        let meta = fs::metadata(&path).expect("stat");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::read(&path).expect("read"), b"new");
        assert!(!dir.path().join("key.pem.tmp").exists());
    }

    #[test]
    fn errors_name_the_path() {
        let err = read(Path::new("/nonexistent/edgemig/ca.pem")).expect_err("missing");
        assert_eq!(err.to_string(), "Cannot read /nonexistent/edgemig/ca.pem");
    }
}
