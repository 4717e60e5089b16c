//! What the MPTCP-for-applications code needs from systemd, behind the
//! [`Systemd`] trait so it can be tested without it: a unit's state and
//! cgroup (`systemctl show`), restarting it (`systemctl restart`), and
//! `mptcpize enable|disable UNIT` (Debian package `mptcpize`: sets or
//! removes `Environment=LD_PRELOAD=…libmptcpwrap…` for the unit and
//! reloads systemd; the unit's processes have it from their next start).
//! [`Systemctl`] runs the real commands.

use std::process::Command;

/// Errors of systemd commands.
#[derive(Debug, thiserror::Error)]
pub enum SystemdError {
    /// A unit name that is not one (it would reach a command line).
    #[error("Invalid unit name {0:?}")]
    BadUnit(String),
    /// The command could not be started.
    #[error("Cannot run {cmd}")]
    Spawn {
        /// The command.
        cmd: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The command failed.
    #[error("{cmd} failed: {stderr}")]
    Failed {
        /// The command.
        cmd: String,
        /// What it printed on stderr (trimmed).
        stderr: String,
    },
}

/// A unit as `systemctl show` describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitInfo {
    /// `LoadState` (`loaded`, `not-found`, `masked`, …).
    pub load_state: String,
    /// `ActiveState` (`active`, `inactive`, `activating`, `failed`, …).
    pub active_state: String,
    /// `ControlGroup` (below the cgroup2 root) while the unit has one.
    pub control_group: Option<String>,
    /// `Slice` (`system.slice`).
    pub slice: Option<String>,
    /// `InvocationID`: changes each time the unit starts.
    pub invocation_id: Option<String>,
    /// Whether its `Environment` preloads mptcpize's `libmptcpwrap`.
    pub preloaded: bool,
}

impl UnitInfo {
    /// Whether systemd knows the unit.
    pub fn exists(&self) -> bool {
        !self.load_state.is_empty() && self.load_state != "not-found"
    }

    /// Whether it has processes (or is about to).
    pub fn running(&self) -> bool {
        matches!(
            self.active_state.as_str(),
            "active" | "activating" | "reloading" | "deactivating"
        )
    }

    /// Where its cgroup is (or will be when it starts), below the cgroup2
    /// root: its `ControlGroup`, else its slice's path plus its name.
    pub fn expected_cgroup(&self, unit: &str) -> Option<String> {
        if let Some(cg) = &self.control_group {
            return Some(cg.clone());
        }
        let slice = slice_path(self.slice.as_deref()?)?;
        Some(format!("{}/{unit}", slice.trim_end_matches('/')))
    }
}

/// The cgroup path of a slice unit: `-.slice` is the root, `a-b.slice`
/// lives in `a.slice` (`/a.slice/a-b.slice`).
pub fn slice_path(slice: &str) -> Option<String> {
    let base = slice.strip_suffix(".slice")?;
    if base == "-" {
        return Some("/".into());
    }
    if base.is_empty() || base.starts_with('-') || base.ends_with('-') || base.contains("--") {
        return None;
    }
    let mut path = String::new();
    let mut prefix = String::new();
    for part in base.split('-') {
        if !prefix.is_empty() {
            prefix.push('-');
        }
        prefix.push_str(part);
        path.push('/');
        path.push_str(&prefix);
        path.push_str(".slice");
    }
    Some(path)
}

/// Parses `systemctl show -p …` output (`Key=Value` lines).
pub fn parse_show(text: &str) -> UnitInfo {
    let mut info = UnitInfo::default();
    let some = |v: &str| (!v.is_empty()).then(|| v.to_string());
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        match key {
            "LoadState" => info.load_state = value.to_string(),
            "ActiveState" => info.active_state = value.to_string(),
            "ControlGroup" => info.control_group = some(value),
            "Slice" => info.slice = some(value),
            "InvocationID" => info.invocation_id = some(value),
            "Environment" => {
                info.preloaded = value
                    .split_whitespace()
                    .any(|kv| kv.starts_with("LD_PRELOAD=") && kv.contains("libmptcpwrap"));
            }
            _ => {}
        }
    }
    info
}

/// Checks that `unit` is a plain unit name (letters, digits, `:_.@-\`, not
/// starting with `-`), so it cannot turn into an option or a path.
pub fn check_unit(unit: &str) -> Result<(), SystemdError> {
    let ok = !unit.is_empty()
        && unit.len() <= 256
        && !unit.starts_with('-')
        && unit
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b":_.@-\\".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(SystemdError::BadUnit(unit.to_string()))
    }
}

/// What the agent asks of systemd.
pub trait Systemd: Send + Sync {
    /// The unit's state.
    fn show(&self, unit: &str) -> Result<UnitInfo, SystemdError>;
    /// Restarts the unit and waits for the start job.
    fn restart(&self, unit: &str) -> Result<(), SystemdError>;
    /// `mptcpize enable UNIT` (`enable`) or `mptcpize disable UNIT`.
    fn mptcpize(&self, unit: &str, enable: bool) -> Result<(), SystemdError>;
}

/// The real thing: `systemctl` and `mptcpize` from `PATH`.
#[derive(Debug, Default)]
pub struct Systemctl;

fn run(program: &str, args: &[&str]) -> Result<String, SystemdError> {
    let cmd = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| SystemdError::Spawn {
            cmd: cmd.clone(),
            source,
        })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(SystemdError::Failed {
            cmd,
            stderr: if stderr.is_empty() {
                out.status.to_string()
            } else {
                stderr
            },
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Systemd for Systemctl {
    fn show(&self, unit: &str) -> Result<UnitInfo, SystemdError> {
        check_unit(unit)?;
        let text = run(
            "systemctl",
            &[
                "show",
                "--no-pager",
                "-p",
                "LoadState,ActiveState,ControlGroup,Slice,InvocationID,Environment",
                "--",
                unit,
            ],
        )?;
        Ok(parse_show(&text))
    }

    fn restart(&self, unit: &str) -> Result<(), SystemdError> {
        check_unit(unit)?;
        run("systemctl", &["restart", "--", unit]).map(drop)
    }

    fn mptcpize(&self, unit: &str, enable: bool) -> Result<(), SystemdError> {
        check_unit(unit)?;
        let verb = if enable { "enable" } else { "disable" };
        run("mptcpize", &[verb, unit]).map(drop)
    }
}

/// Whether systemd is the init system (`/run/systemd/system` exists, as
/// `sd_booted()` checks).
pub fn booted() -> bool {
    std::path::Path::new("/run/systemd/system").is_dir()
}

/// Whether `mptcpize` is installed (on `PATH`).
pub fn has_mptcpize() -> bool {
    std::env::var_os("PATH")
        .as_deref()
        .map(std::env::split_paths)
        .into_iter()
        .flatten()
        .chain(["/usr/bin".into(), "/usr/sbin".into()])
        .any(|dir| dir.join("mptcpize").is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_systemctl_show() {
        let text = "LoadState=loaded\nActiveState=active\nControlGroup=/system.slice/nginx.service\n\
                    Slice=system.slice\nInvocationID=4d1b2c\n\
                    Environment=LD_PRELOAD=/usr/lib/x86_64-linux-gnu/mptcpize/libmptcpwrap.so.0.0.1 A=b\n";
        let u = parse_show(text);
        assert!(u.exists() && u.running() && u.preloaded);
        assert_eq!(
            u.control_group.as_deref(),
            Some("/system.slice/nginx.service")
        );
        assert_eq!(u.invocation_id.as_deref(), Some("4d1b2c"));
        let stopped = parse_show(
            "LoadState=loaded\nActiveState=inactive\nControlGroup=\nSlice=system.slice\nInvocationID=\nEnvironment=\n",
        );
        assert!(stopped.exists() && !stopped.running() && !stopped.preloaded);
        assert_eq!(stopped.control_group, None);
        assert_eq!(
            stopped.expected_cgroup("nginx.service").as_deref(),
            Some("/system.slice/nginx.service")
        );
        let missing = parse_show("LoadState=not-found\nActiveState=inactive\n");
        assert!(!missing.exists());
    }

    #[test]
    fn slice_paths_follow_systemd_naming() {
        assert_eq!(slice_path("-.slice").as_deref(), Some("/"));
        assert_eq!(slice_path("system.slice").as_deref(), Some("/system.slice"));
        assert_eq!(
            slice_path("user-1000.slice").as_deref(),
            Some("/user.slice/user-1000.slice")
        );
        assert_eq!(
            slice_path("a-b-c.slice").as_deref(),
            Some("/a.slice/a-b.slice/a-b-c.slice")
        );
        assert_eq!(slice_path("nginx.service"), None);
        assert_eq!(slice_path("a--b.slice"), None);
        let root = UnitInfo {
            slice: Some("-.slice".into()),
            ..UnitInfo::default()
        };
        assert_eq!(
            root.expected_cgroup("x.service").as_deref(),
            Some("/x.service")
        );
    }

    #[test]
    fn unit_names_cannot_become_options_or_paths() {
        for ok in [
            "nginx.service",
            "getty@tty1.service",
            "a-b_c:d.socket",
            "x\\x2d.service",
        ] {
            assert!(check_unit(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-H host",
            "--all",
            "../x.service",
            "a b",
            "a;b",
            "x/y.service",
        ] {
            assert!(check_unit(bad).is_err(), "{bad}");
        }
    }
}
