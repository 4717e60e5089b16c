//! MPTCP for the guest's unmodified applications (protocol 3): which
//! applications get it ([`MptcpScope`]), how ([`MptcpMechanism`]), what the
//! guest can do ([`MptcpAppsSupport`], in the agent's identity) and what it
//! did ([`MptcpAppsReport`]). See docs/guest-agent.md.
//!
//! An MPTCP socket falls back to plain TCP with a peer that does not speak
//! MPTCP, so turning applications' sockets into MPTCP ones breaks nobody.

use serde::{Deserialize, Serialize};

/// Which applications' TCP sockets are made MPTCP.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MptcpScope {
    /// Every `socket(AF_INET | AF_INET6, SOCK_STREAM, 0 | IPPROTO_TCP)` in
    /// the guest, whatever process makes it. Needs the kernel's BPF hook
    /// ([`HookSupport::Available`]).
    All,
    /// Only the processes of these systemd units (`nginx.service`, …):
    /// through the BPF hook, matched by the units' cgroups; without it,
    /// through `mptcpize` (LD_PRELOAD, dynamically linked programs only).
    Units(Vec<String>),
    /// None: the agent changes no application's sockets.
    #[default]
    Off,
}

/// How the guest gives applications MPTCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MptcpMechanism {
    /// The BPF `fmod_ret` program on the kernel's `update_socket_protocol`
    /// (Linux 6.6 and later with BTF): any program, static or dynamic, and
    /// no restart needed for sockets created from now on.
    Bpf,
    /// `mptcpize enable UNIT` (Debian package `mptcpize`): the unit runs
    /// with `LD_PRELOAD=libmptcpwrap.so`; takes effect when the unit
    /// (re)starts, and only for dynamically linked programs that create
    /// their sockets through libc.
    Mptcpize,
}

/// Whether the kernel's BPF hook can be used, and if not why.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookSupport {
    /// Not reported (an agent before protocol 3).
    #[default]
    Unknown,
    /// The program loads: `all` and `units` work through BPF.
    Available,
    /// The kernel has no BTF (`/sys/kernel/btf/vmlinux`).
    NoBtf,
    /// The kernel has no `update_socket_protocol` (before Linux 6.6; e.g.
    /// Debian 12's 6.1).
    NoHook,
    /// The agent may not load BPF tracing programs.
    NoPermission,
    /// Anything else; the text says what.
    Failed(String),
}

/// What the guest can do for unmodified applications (in the agent's
/// identity).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MptcpAppsSupport {
    /// The BPF hook.
    #[serde(default)]
    pub bpf: HookSupport,
    /// Whether `mptcpize` is installed (and systemd runs the guest, which
    /// it needs).
    #[serde(default)]
    pub mptcpize: bool,
}

/// Where one unit stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnitState {
    /// Running, and the sockets its processes create are MPTCP.
    Active,
    /// Running, set up, but its processes started before: sockets they
    /// already have (a server's listening socket, say) stay TCP until the
    /// unit restarts. Ask with `restart: true` to have the agent restart
    /// it.
    RestartNeeded,
    /// Not running; it gets MPTCP when it starts.
    Inactive,
    /// It cannot get MPTCP; the text says why (no such unit, `mptcpize`
    /// failed, …).
    Failed(String),
}

/// One unit of a [`MptcpScope::Units`] scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitReport {
    /// The unit, as given.
    pub unit: String,
    /// Where it stands.
    pub state: UnitState,
    /// Its cgroup (path below the cgroup2 root) while it runs, with the
    /// BPF mechanism.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
}

/// Answer to `MptcpApps` and `MptcpAppsStatus`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MptcpAppsReport {
    /// The scope in force.
    pub scope: MptcpScope,
    /// How it is enforced; `None` when the scope is off.
    pub mechanism: Option<MptcpMechanism>,
    /// With BPF: whether the hook is pinned in the BPF file system, so an
    /// agent restart does not drop it even for a moment.
    #[serde(default)]
    pub pinned: bool,
    /// Per unit, for a units scope (in the order given).
    #[serde(default)]
    pub units: Vec<UnitReport>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format() {
        assert_eq!(serde_json::to_string(&MptcpScope::All).unwrap(), r#""all""#);
        assert_eq!(serde_json::to_string(&MptcpScope::Off).unwrap(), r#""off""#);
        let units = MptcpScope::Units(vec!["nginx.service".into()]);
        let json = serde_json::to_string(&units).unwrap();
        assert_eq!(json, r#"{"units":["nginx.service"]}"#);
        assert_eq!(serde_json::from_str::<MptcpScope>(&json).unwrap(), units);
        let report = MptcpAppsReport {
            scope: units,
            mechanism: Some(MptcpMechanism::Bpf),
            pinned: true,
            units: vec![
                UnitReport {
                    unit: "nginx.service".into(),
                    state: UnitState::RestartNeeded,
                    cgroup: Some("/system.slice/nginx.service".into()),
                },
                UnitReport {
                    unit: "nope.service".into(),
                    state: UnitState::Failed("no such unit".into()),
                    cgroup: None,
                },
            ],
        };
        let v = serde_json::to_value(&report).unwrap();
        assert_eq!(v["mechanism"], "bpf");
        assert_eq!(v["units"][0]["state"], "restart_needed");
        assert_eq!(v["units"][1]["state"]["failed"], "no such unit");
        assert_eq!(
            serde_json::from_value::<MptcpAppsReport>(v).unwrap(),
            report
        );
        let support: MptcpAppsSupport = serde_json::from_str("{}").unwrap();
        assert_eq!(support.bpf, HookSupport::Unknown);
        let v = serde_json::to_value(HookSupport::Failed("x".into())).unwrap();
        assert_eq!(v["failed"], "x");
    }
}
