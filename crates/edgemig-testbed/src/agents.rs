//! Killing and restarting a running testbed's site agents, as a crash and
//! an operator (or systemd's `Restart=on-failure`) would: the fault tests
//! use it. The restarted agent keeps the site's config, state directory and
//! log, and its pid goes into the testbed's state so `down` ends it.

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use crate::lifecycle::TestbedError;
use crate::process;
use crate::state::{ProcessRecord, TestbedState};

/// How long a restarted agent may take to be ready.
const READY_LIMIT: Duration = Duration::from_secs(60);

fn role(site: &str) -> String {
    format!("edgemigd:{site}")
}

/// Kills site `site`'s agent of testbed `name` with SIGKILL, as a crash
/// would, and waits until it is gone; returns its pid.
pub fn kill_agent(name: &str, site: &str) -> Result<u32, TestbedError> {
    let state = TestbedState::load(name)?;
    let marker = state.dir.display().to_string();
    let pid = state
        .processes
        .iter()
        .rev()
        .find(|p| p.role == role(site) && process::is_ours(p.pid, &marker))
        .map(|p| p.pid)
        .ok_or_else(|| TestbedError::Missing(format!("No running agent of site {site:?}")))?;
    if let Ok(p) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) takes plain integers and has no memory effects.
        unsafe { libc::kill(p, libc::SIGKILL) };
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while process::alive(pid) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(pid)
}

/// Starts site `site`'s agent again (`agent` binary) with its config, in
/// its namespace; returns once it logged that it is ready.
pub fn start_agent(name: &str, site: &str, agent: &Path) -> Result<u32, TestbedError> {
    let mut state = TestbedState::load(name)?;
    let marker = state.dir.display().to_string();
    if state
        .processes
        .iter()
        .any(|p| p.role == role(site) && process::is_ours(p.pid, &marker))
    {
        return Err(TestbedError::Missing(format!(
            "The agent of site {site:?} runs already"
        )));
    }
    let s = state
        .sites
        .iter()
        .find(|s| s.name == site)
        .cloned()
        .ok_or_else(|| TestbedError::Missing(format!("No site {site:?} in testbed {name}")))?;
    let before = std::fs::metadata(&s.log).map_or(0, |m| m.len());
    let args: Vec<OsString> = vec!["--config".into(), s.config.clone().into()];
    let pid = process::spawn_detached(Some(&s.netns), agent, &args, &s.log)?;
    state.processes.push(ProcessRecord {
        role: role(site),
        pid,
    });
    state.save()?;
    process::wait_for_log_after(
        &format!("edgemigd of {site}"),
        pid,
        &s.log,
        before,
        "edgemigd ready",
        READY_LIMIT,
    )?;
    Ok(pid)
}
