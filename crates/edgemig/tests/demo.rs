//! The demo in its quick form (`--seconds 1`): a Debian 12 VM (built from
//! Debian packages, nginx-light given MPTCP by the guest agent) follows
//! alice from site-a to site-b while her stock client (`mptcpize run curl`)
//! downloads from it; the story's facts are checked in its JSON: her
//! download survived on one connection with every copy intact, her
//! connection ended on the VM's new address, only the root disk's overlay
//! travelled, and downtime, phases and stall were measured.

use std::process::Command;

use serde_json::Value;

#[test]
fn demo_ends_with_the_debian_vm_near_alice_and_her_download_alive() {
    let dir = tempfile::tempdir().unwrap();
    edgemig_testkit::open_to_qemu(dir.path());
    let name = format!("dm{}", std::process::id() % 100_000);
    let out = Command::new(env!("CARGO_BIN_EXE_edgemig"))
        .env("EDGEMIG_TESTBED_DIR", dir.path())
        .args(["--json", "demo", "--name", &name, "--seconds", "1"])
        .output()
        .expect("run the demo");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let s: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert!(out.status.success(), "demo failed: {s}\n{stderr}");
    let ctx = format!("{s}\n{stderr}");

    assert_eq!(s["vm_site"], "site-b", "{ctx}");
    assert_eq!(s["trigger"]["by"], "follow", "{ctx}");
    assert_eq!(s["image"]["packages"][0], "nginx-light", "{ctx}");
    assert_eq!(
        s["mptcp_apps"], "bpf",
        "the 6.12 guest kernel has the hook: {ctx}"
    );

    // Alice's stock client: exit 0, every copy is the file, one connection.
    let session = &s["session"];
    assert_eq!(session["exit_code"], 0, "{ctx}");
    let copies = session["copies"].as_u64().unwrap();
    assert!(copies >= 2, "{ctx}");
    assert_eq!(session["verified_copies"].as_u64(), Some(copies), "{ctx}");
    assert_eq!(
        session["bytes"].as_u64(),
        Some(copies * session["copy_bytes"].as_u64().unwrap()),
        "{ctx}"
    );
    assert_eq!(session["connections"], 1, "curl never reconnected: {ctx}");
    assert_eq!(session["spanned"], true, "{ctx}");
    assert_eq!(session["alive"], true, "{ctx}");

    // Her connection moved to the VM's new address.
    let address = &s["address"];
    let new = address["new"].as_str().unwrap();
    assert!(new.starts_with("10.20.0."), "site-b's network: {ctx}");
    assert_ne!(address["old"], address["new"], "{ctx}");
    assert!(address["subflows_to_new"].as_u64() >= Some(1), "{ctx}");
    assert_eq!(address["subflows_to_old"], 0, "{ctx}");
    let report = &s["migration"];
    assert_eq!(report["network"]["handoff"], "done", "{ctx}");
    assert!(report["network"]["moved"].as_u64() >= Some(1), "{ctx}");

    // What the migration cost, measured.
    assert_eq!(report["status"], "completed", "{ctx}");
    assert_eq!(report["transport"], "mptcp", "{ctx}");
    for key in ["total_ms", "downtime_ms", "qemu_downtime_ms", "fixed_ms"] {
        assert!(report[key].is_u64(), "{key} missing: {ctx}");
    }
    for phase in [
        "prepare_ms",
        "disk_ms",
        "memory_ms",
        "switchover_ms",
        "handoff_ms",
    ] {
        assert!(report["phases"][phase].is_u64(), "{phase} missing: {ctx}");
    }
    let root = &report["disks"][0];
    assert_eq!(root["role"], "root", "{ctx}");
    assert_eq!(root["sync"], "top", "site-b held the pushed image: {ctx}");
    assert!(
        root["bytes"].as_u64().unwrap() < 512 << 20,
        "only the overlay travelled: {ctx}"
    );
    let paths = report["paths"].as_array().unwrap();
    assert_eq!(paths.len(), 2, "{ctx}");
    assert!(
        paths.iter().all(|p| p["bytes"].as_u64() > Some(1 << 20)),
        "both paths carried the migration: {ctx}"
    );

    // Alice's figures and the stall she saw.
    for when in ["before", "after"] {
        assert!(s[when]["rtt_ms"].as_f64() > Some(0.0), "{when}: {ctx}");
        assert!(s[when]["mbit"].as_f64() > Some(0.0), "{when}: {ctx}");
    }
    let stall = &s["stall"];
    let (max, p99) = (stall["max_ms"].as_u64(), stall["p99_ms"].as_u64());
    assert!(max >= Some(10), "a gap is at least one 10 ms slot: {ctx}");
    assert!(p99 >= Some(10) && p99 <= max, "{ctx}");
    assert!(s["baseline"].is_null(), "{ctx}");

    // The demo removed its testbed.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    assert!(!std::path::Path::new(&format!("/run/netns/{name}_site-a")).exists());
}
