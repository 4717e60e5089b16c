//! Finding the QEMU binary and checking its version.

use std::fmt;
use std::path::{Path, PathBuf};

/// Oldest QEMU major version edgemig works with (MPTCP socket addresses,
/// migration channels).
pub const MIN_MAJOR: u32 = 10;

/// A QEMU version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct QemuVersion {
    /// Major.
    pub major: u32,
    /// Minor.
    pub minor: u32,
    /// Micro.
    pub micro: u32,
}

impl fmt::Display for QemuVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.micro)
    }
}

/// Problems with the QEMU binary.
#[derive(Debug, thiserror::Error)]
pub enum QemuBinaryError {
    /// Not installed / not on PATH.
    #[error(
        "QEMU not found ({binary}): install qemu-system-x86 >= {MIN_MAJOR} from bookworm-backports (scripts/setup.sh does it)"
    )]
    Missing {
        /// Binary tried.
        binary: PathBuf,
        /// Why running it failed.
        #[source]
        source: std::io::Error,
    },
    /// Its version output was not understood.
    #[error("Cannot tell the version of {binary} from {output:?}")]
    Unparsable {
        /// Binary tried.
        binary: PathBuf,
        /// What it printed.
        output: String,
    },
    /// Too old.
    #[error(
        "QEMU {found} at {binary} is too old: edgemig needs {MIN_MAJOR}.0 or newer (Debian: qemu-system-x86 from bookworm-backports; scripts/setup.sh installs it)"
    )]
    TooOld {
        /// Binary tried.
        binary: PathBuf,
        /// Its version.
        found: QemuVersion,
    },
}

/// Runs `binary --version` and checks it is new enough.
pub fn check_binary(binary: &Path) -> Result<QemuVersion, QemuBinaryError> {
    let output = std::process::Command::new(binary)
        .arg("--version")
        .output()
        .map_err(|source| QemuBinaryError::Missing {
            binary: binary.to_path_buf(),
            source,
        })?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let version = parse_version(&text).ok_or_else(|| QemuBinaryError::Unparsable {
        binary: binary.to_path_buf(),
        output: text.lines().next().unwrap_or_default().to_string(),
    })?;
    if version.major < MIN_MAJOR {
        return Err(QemuBinaryError::TooOld {
            binary: binary.to_path_buf(),
            found: version,
        });
    }
    Ok(version)
}

fn parse_version(text: &str) -> Option<QemuVersion> {
    let rest = text.split("version ").nth(1)?;
    let token = rest.split_whitespace().next()?;
    let mut parts = token.split('.').map(|p| {
        p.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse::<u32>()
    });
    Some(QemuVersion {
        major: parts.next()?.ok()?,
        minor: parts.next().and_then(Result::ok).unwrap_or(0),
        micro: parts.next().and_then(Result::ok).unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_debian_version_line() {
        let v =
            parse_version("QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)\n")
                .unwrap();
        assert_eq!(
            v,
            QemuVersion {
                major: 10,
                minor: 0,
                micro: 2
            }
        );
        assert!(parse_version("garbage").is_none());
    }

    #[test]
    fn missing_binary_is_a_clear_error() {
        let err = check_binary(Path::new("/nonexistent/qemu")).unwrap_err();
        assert!(matches!(err, QemuBinaryError::Missing { .. }));
        assert!(err.to_string().contains("bookworm-backports"));
    }

    #[test]
    fn too_old_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("qemu");
        std::fs::write(&fake, "#!/bin/sh\necho 'QEMU emulator version 7.2.15'\n").unwrap();
        std::os::unix::fs::PermissionsExt::set_mode(
            &mut std::fs::metadata(&fake).unwrap().permissions(),
            0o755,
        );
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let err = check_binary(&fake).unwrap_err();
        assert!(matches!(err, QemuBinaryError::TooOld { .. }), "{err}");
        assert!(err.to_string().contains("7.2.15"));
    }
}
