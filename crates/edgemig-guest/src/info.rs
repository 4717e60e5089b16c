//! The agent's identity ([`AgentInfo`]): version, protocol, the guest
//! uptime when it became ready, the kernel release, whether systemd runs
//! it, and what it can do to give applications MPTCP.

use edgemig_guest_proto::PROTOCOL_VERSION;
use edgemig_guest_proto::mptcp_apps::MptcpAppsSupport;
use edgemig_guest_proto::v3::AgentInfo;
use std::path::Path;

/// Errors reading the uptime.
#[derive(Debug, thiserror::Error)]
pub enum InfoError {
    /// `/proc/uptime` could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// File read.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// `/proc/uptime` did not start with a number.
    #[error("cannot parse uptime {0:?}")]
    Parse(String),
}

/// Parses the first field of `/proc/uptime` ("12.34 56.78") into ms.
pub fn parse_uptime_ms(text: &str) -> Result<u64, InfoError> {
    let first = text.split_whitespace().next().unwrap_or("");
    let secs: f64 = first
        .parse()
        .map_err(|_| InfoError::Parse(text.trim().to_string()))?;
    if !secs.is_finite() || secs < 0.0 {
        return Err(InfoError::Parse(text.trim().to_string()));
    }
    Ok((secs * 1000.0).round() as u64)
}

/// Uptime of the machine in ms, read from `path` (normally `/proc/uptime`).
pub fn uptime_ms(path: &Path) -> Result<u64, InfoError> {
    let text = std::fs::read_to_string(path).map_err(|source| InfoError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse_uptime_ms(&text)
}

/// This agent's [`AgentInfo`], with `boot_ms` = current uptime (0 if
/// unknown) and `mptcp_apps` as given.
pub fn agent_info(mptcp_apps: MptcpAppsSupport) -> AgentInfo {
    let boot_ms = uptime_ms(Path::new("/proc/uptime")).unwrap_or_else(|e| {
        eprintln!("edgemig-guest: {e}");
        0
    });
    AgentInfo {
        version: env!("CARGO_PKG_VERSION").to_string(),
        protocol: PROTOCOL_VERSION,
        boot_ms,
        kernel: kernel_release(),
        systemd: under_systemd(),
        mptcp_apps,
    }
}

/// The kernel release (`uname -r`), empty if unreadable.
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Whether systemd runs this process as a service: systemd is the init
/// system and set `INVOCATION_ID` for it.
pub fn under_systemd() -> bool {
    crate::apps::systemd::booted() && std::env::var_os("INVOCATION_ID").is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_uptime() {
        assert_eq!(parse_uptime_ms("4.21 3.10\n").unwrap(), 4210);
        assert!(parse_uptime_ms("").is_err());
        assert!(parse_uptime_ms("abc 1").is_err());
    }

    #[test]
    fn info_has_version_and_kernel() {
        let info = agent_info(MptcpAppsSupport::default());
        assert_eq!(info.protocol, PROTOCOL_VERSION);
        assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        assert_eq!(info.kernel, release.trim());
        assert!(!info.kernel.is_empty());
    }
}
