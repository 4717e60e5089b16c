//! Kernel settings the agent owns: MPTCP on, and a short ADD_ADDR
//! retransmission timeout. The busybox image's `/init` sets them too; the
//! agent sets them itself so that a guest where systemd starts it (a real
//! distribution) gets the same behaviour.

use std::path::Path;

/// `net.mptcp.enabled`: MPTCP sockets can be created.
pub const MPTCP_ENABLED: (&str, &str) = ("/proc/sys/net/mptcp/enabled", "1");
/// `net.mptcp.add_addr_timeout`, in s: an ADD_ADDR rides on one ACK; when
/// that ACK is lost (say, while the tunnel to the old site comes up) the
/// kernel re-sends it only after this long (120 s by default, longer than
/// the handoff's grace period).
pub const ADD_ADDR_TIMEOUT: (&str, &str) = ("/proc/sys/net/mptcp/add_addr_timeout", "2");

/// Errors writing a setting (logged, not fatal).
#[derive(Debug, thiserror::Error)]
#[error("Cannot set {path} to {value}")]
pub struct SysctlError {
    /// The file.
    pub path: String,
    /// The value.
    pub value: String,
    /// Cause.
    #[source]
    pub source: std::io::Error,
}

/// Writes `value` to the sysctl file `path` (unless it holds it already).
pub fn set(path: &Path, value: &str) -> Result<(), SysctlError> {
    if std::fs::read_to_string(path).is_ok_and(|v| v.trim() == value) {
        return Ok(());
    }
    std::fs::write(path, format!("{value}\n")).map_err(|source| SysctlError {
        path: path.display().to_string(),
        value: value.to_string(),
        source,
    })
}

/// Sets [`MPTCP_ENABLED`] and [`ADD_ADDR_TIMEOUT`]; returns the failures.
pub fn set_mptcp() -> Vec<SysctlError> {
    [MPTCP_ENABLED, ADD_ADDR_TIMEOUT]
        .iter()
        .filter_map(|(p, v)| set(Path::new(p), v).err())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_only_when_different() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("enabled");
        std::fs::write(&f, "0\n").unwrap();
        set(&f, "1").unwrap();
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "1\n");
        set(&f, "1").unwrap();
        let err = set(&dir.path().join("no/such"), "1").unwrap_err();
        assert!(err.to_string().contains("no/such"));
    }
}
