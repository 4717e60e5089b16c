//! Shared helpers of the black-box tests: running the `edgemig` CLI against
//! a test agent.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use edgemig_testkit::{TestAgent, wait_until};
use serde_json::Value;

/// Path of the `edgemigd` binary under test.
pub fn agent_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_edgemigd"))
}

/// Runs `edgemig --socket SOCKET ARGS...`.
pub fn cli(socket: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_edgemig"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .expect("run edgemig")
}

/// Runs the CLI with `--json`, asserts success and parses stdout.
pub fn cli_json(agent: &TestAgent, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = cli(&agent.socket(), &all);
    assert!(
        out.status.success(),
        "edgemig {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

/// Waits until the guest agent of `vm` reported ready; returns its info.
pub fn wait_guest_ready(agent: &TestAgent, vm: &str) -> Value {
    wait_until("guest agent ready", Duration::from_secs(120), || {
        let info = cli_json(agent, &["vm", "show", vm]);
        (!info["guest"].is_null()).then(|| info["guest"].clone())
    })
    .unwrap_or_else(|e| panic!("{e}"))
}
