//! Bad input gives one clear error line, a documented exit code, and leaves
//! nothing half-created.

mod common;

use std::process::Command;

use common::{agent_binary, cli, cli_json};
use edgemig::exit;
use edgemig_testkit::TestAgent;

fn code(out: &std::process::Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn cli_reports_bad_requests_with_exit_codes() {
    let agent = TestAgent::start(agent_binary());
    let s = agent.socket();

    let out = cli(&s, &["vm", "show", "ghost"]);
    assert_eq!(code(&out), i32::from(exit::NOT_FOUND), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("No VM named \"ghost\""),
        "{}",
        stderr(&out)
    );

    let out = cli(&s, &["vm", "create", "Bad_Name"]);
    assert_eq!(code(&out), i32::from(exit::INVALID), "{}", stderr(&out));

    let out = cli(&s, &["vm", "create", "huge", "--memory", "100T"]);
    assert_eq!(code(&out), i32::from(exit::INVALID), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("more than this host has"),
        "{}",
        stderr(&out)
    );

    let out = cli(&s, &["vm", "create", "sized", "--memory", "lots"]);
    assert_eq!(code(&out), i32::from(exit::INVALID), "{}", stderr(&out));

    cli_json(&agent, &["vm", "create", "dup", "--memory", "64M"]);
    let out = cli(&s, &["vm", "create", "dup", "--memory", "64M"]);
    assert_eq!(code(&out), i32::from(exit::CONFLICT), "{}", stderr(&out));

    let out = cli(&s, &["vm", "stop", "dup"]);
    assert_eq!(code(&out), i32::from(exit::CONFLICT), "{}", stderr(&out));

    let out = cli(&s, &["vm", "guest", "dup", "hello"]);
    assert_eq!(code(&out), i32::from(exit::CONFLICT), "{}", stderr(&out));

    // Placement policies: bad values, unknown VM, and a site without a
    // directory (this agent has none) each get their own code.
    let out = cli(&s, &["vm", "policy", "dup", "follow", "--min-gain", "150%"]);
    assert_eq!(code(&out), i32::from(exit::INVALID), "{}", stderr(&out));
    let out = cli(&s, &["vm", "policy", "dup", "follow", "--hold", "soon"]);
    assert_eq!(code(&out), i32::from(exit::INVALID), "{}", stderr(&out));
    let out = cli(&s, &["vm", "policy", "ghost", "follow"]);
    assert_eq!(code(&out), i32::from(exit::NOT_FOUND), "{}", stderr(&out));
    let out = cli(&s, &["vm", "policy", "dup", "follow"]);
    assert_eq!(code(&out), i32::from(exit::UNAVAILABLE), "{}", stderr(&out));
    assert!(stderr(&out).contains("[directory]"), "{}", stderr(&out));
    assert!(cli_json(&agent, &["vm", "show", "dup"])["policy"].is_null());

    // Nothing half-created: only the one good VM exists.
    let list = cli_json(&agent, &["vm", "list"]);
    let names: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].clone())
        .collect();
    assert_eq!(names, vec![serde_json::json!("dup")]);
}

#[test]
fn agent_not_running_is_exit_code_3() {
    let dir = tempfile::tempdir().unwrap();
    let out = cli(&dir.path().join("nobody.sock"), &["vm", "list"]);
    assert_eq!(code(&out), i32::from(exit::AGENT_UNREACHABLE));
    assert!(
        stderr(&out).contains("is the agent running?"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn agent_rejects_malformed_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "site = \"a\"\nunknown_field = 1\n").unwrap();
    let out = Command::new(agent_binary())
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("Invalid config file"), "{err}");
    assert!(err.contains("unknown_field"), "{err}");

    let out = Command::new(agent_binary())
        .arg("--config")
        .arg(dir.path().join("missing.toml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("Cannot read config file"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn missing_guest_image_refuses_start_and_changes_nothing() {
    let empty = tempfile::tempdir().unwrap();
    let agent = TestAgent::start_with_image(agent_binary(), empty.path());
    cli_json(&agent, &["vm", "create", "noimage", "--memory", "64M"]);
    let out = cli(&agent.socket(), &["vm", "start", "noimage"]);
    assert_eq!(code(&out), i32::from(exit::UNAVAILABLE), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("edgemig image build"),
        "{}",
        stderr(&out)
    );
    let shown = cli_json(&agent, &["vm", "show", "noimage"]);
    assert_eq!(shown["state"], "stopped");
    assert!(shown["pid"].is_null());
    assert!(agent.qemu_pids().is_empty());
}
