//! A real guest under TCG, driven through the `edgemig` CLI and `edgemigd`:
//! boot, guest agent readiness, memory and disk workloads verified, network
//! reachability of nic0, stop and delete; an agent restart re-attaching to
//! its VM, and one killed while it started a VM ending that QEMU.

mod common;

use std::time::{Duration, Instant};

use common::{agent_binary, cli, cli_json, wait_guest_ready};
use edgemig_testkit::{TestAgent, alive, wait_until};

#[test]
fn vm_boots_runs_verified_workloads_and_stops() {
    let agent = TestAgent::start(agent_binary());
    let created = cli_json(
        &agent,
        &["vm", "create", "vm1", "--memory", "192M", "--disk", "64M"],
    );
    assert_eq!(created["state"], "stopped");
    assert_eq!(created["memory_mib"], 192);
    assert_eq!(created["nics"].as_array().map(Vec::len), Some(2));

    let started_at = Instant::now();
    let started = cli_json(&agent, &["vm", "start", "vm1"]);
    assert_eq!(started["state"], "running");
    let pid = started["pid"].as_u64().expect("pid") as u32;
    assert!(alive(pid));
    let guest = wait_guest_ready(&agent, "vm1");
    eprintln!(
        "guest ready {:?} after start (guest uptime {} ms)",
        started_at.elapsed(),
        guest["boot_ms"]
    );
    assert_eq!(guest["protocol"], edgemig_guest_proto::PROTOCOL_VERSION);

    // nic0 is on the site bridge and configured from the kernel command line.
    let address = started["nics"][0]["address"]
        .as_str()
        .expect("nic0 address");
    let ip = address.split('/').next().unwrap_or_default().to_string();
    wait_until(
        "ping to the guest over nic0",
        Duration::from_secs(30),
        || {
            let out = std::process::Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    agent.netns().name(),
                    "busybox",
                    "ping",
                    "-c",
                    "1",
                    "-W",
                    "1",
                    &ip,
                ])
                .output()
                .ok()?;
            out.status.success().then_some(())
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));

    // The guest's MPTCP service answers over nic0 (our static client, run
    // in the site namespace).
    let client =
        edgemig_testkit::workspace_target().join("x86_64-unknown-linux-gnu/release/edgemig-guest");
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", agent.netns().name()])
        .arg(&client)
        .args([
            "client",
            "--connect",
            &format!("{ip}:7000"),
            "echo",
            "--duration",
            "1",
            "--json",
        ])
        .output()
        .expect("run edgemig-guest client");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("client summary");
    assert_eq!(summary["proto"], "mptcp", "{summary}");
    assert_eq!(summary["errors"], 0, "{summary}");
    assert!(summary["probes"].as_u64() > Some(0), "{summary}");

    // Memory writer: let it complete a pass, then verify every page.
    cli_json(&agent, &["vm", "guest", "vm1", "mem-write", "--mib", "32"]);
    wait_until("one full memory pass", Duration::from_secs(120), || {
        let status = cli_json(&agent, &["vm", "guest", "vm1", "mem-status"]);
        (status["passes"].as_u64() >= Some(1)).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let verify = cli_json(&agent, &["vm", "guest", "vm1", "mem-verify"]);
    assert_eq!(verify["bad_pages"], 0, "{verify}");
    assert_eq!(verify["pages"], 32 * 256);

    // Data disk: write seeded data, read it back from the disk.
    let written = cli_json(
        &agent,
        &[
            "vm",
            "guest",
            "vm1",
            "disk-write",
            "--mib",
            "16",
            "--seed",
            "42",
        ],
    );
    assert_eq!(written["bytes"], 16 << 20);
    let verified = cli_json(
        &agent,
        &[
            "vm",
            "guest",
            "vm1",
            "disk-verify",
            "--mib",
            "16",
            "--seed",
            "42",
        ],
    );
    assert_eq!(verified["ok"], true, "{verified}");
    assert_eq!(verified["checksum"], written["checksum"]);
    // A wrong seed must fail verification (the check can fail).
    let wrong = cli(
        &agent.socket(),
        &[
            "vm",
            "guest",
            "vm1",
            "disk-verify",
            "--mib",
            "16",
            "--seed",
            "43",
        ],
    );
    assert!(
        !wrong.status.success(),
        "verification with the wrong seed passed"
    );

    let stopped = cli_json(&agent, &["vm", "stop", "vm1"]);
    assert_eq!(stopped["state"], "stopped");
    assert!(!alive(pid), "QEMU still running after stop");
    cli_json(&agent, &["vm", "delete", "vm1"]);
    let list = cli_json(&agent, &["vm", "list"]);
    assert_eq!(list.as_array().map(Vec::len), Some(0));
}

#[test]
fn restarted_agent_reattaches_to_running_vm() {
    let mut agent = TestAgent::start(agent_binary());
    cli_json(&agent, &["vm", "create", "keeper", "--memory", "128M"]);
    let started = cli_json(&agent, &["vm", "start", "keeper"]);
    let pid = started["pid"].as_u64().expect("pid") as u32;
    wait_guest_ready(&agent, "keeper");
    cli_json(
        &agent,
        &["vm", "guest", "keeper", "mem-write", "--mib", "8"],
    );
    wait_until("one full memory pass", Duration::from_secs(120), || {
        let status = cli_json(&agent, &["vm", "guest", "keeper", "mem-status"]);
        (status["passes"].as_u64() >= Some(1)).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}"));

    agent.kill_agent(libc::SIGKILL);
    assert!(alive(pid), "the VM must outlive its agent");
    agent.spawn();

    let shown = cli_json(&agent, &["vm", "show", "keeper"]);
    assert_eq!(shown["state"], "running");
    assert_eq!(shown["pid"].as_u64(), Some(u64::from(pid)));
    wait_guest_ready(&agent, "keeper");
    // Same VM, same memory: the writer kept its pages across the agent restart.
    let status = cli_json(&agent, &["vm", "guest", "keeper", "mem-status"]);
    assert_eq!(status["mib"], 8);
    let verify = cli_json(&agent, &["vm", "guest", "keeper", "mem-verify"]);
    assert_eq!(verify["bad_pages"], 0, "{verify}");

    // A VM that dies while the agent is down is reported crashed on restart.
    agent.kill_agent(libc::SIGKILL);
    edgemig_testkit::kill(pid, libc::SIGKILL);
    wait_until("QEMU exit", Duration::from_secs(10), || {
        (!alive(pid)).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}"));
    agent.spawn();
    let shown = cli_json(&agent, &["vm", "show", "keeper"]);
    assert_eq!(shown["state"], "crashed");
}

#[test]
fn an_agent_killed_while_it_starts_a_vm_leaves_no_second_qemu() {
    let mut agent = TestAgent::start(agent_binary());
    cli_json(&agent, &["vm", "create", "halfway", "--memory", "128M"]);
    let mut start = std::process::Command::new(env!("CARGO_BIN_EXE_edgemig"))
        .arg("--socket")
        .arg(agent.socket())
        .args(["vm", "start", "halfway"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run edgemig vm start");
    // Killed as soon as QEMU wrote its pid file: its pid is in no record yet.
    let limit = Instant::now() + Duration::from_secs(60);
    let pid = loop {
        if let Some(pid) = agent.qemu_pids().first() {
            break *pid;
        }
        assert!(Instant::now() < limit, "QEMU never started");
        std::thread::sleep(Duration::from_millis(5));
    };
    agent.kill_agent(libc::SIGKILL);
    let _ = start.wait();
    assert!(alive(pid), "QEMU outlives its agent");

    agent.spawn();
    wait_until(
        "the half-started QEMU ended",
        Duration::from_secs(30),
        || (!alive(pid)).then_some(()),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.diagnostics()));
    let shown = cli_json(&agent, &["vm", "show", "halfway"]);
    assert_eq!(shown["state"], "stopped", "the start never answered");
    assert!(agent.qemu_pids().is_empty());

    // Started again, the VM has exactly one QEMU, and it boots.
    let started = cli_json(&agent, &["vm", "start", "halfway"]);
    wait_guest_ready(&agent, "halfway");
    assert_eq!(
        agent.qemu_pids(),
        vec![started["pid"].as_u64().expect("pid") as u32]
    );
}
