//! The demo's scenario in its quick form: the VM ends at site-b, alice's
//! session survived, both paths carried the migration.

use std::process::Command;

use serde_json::Value;

#[test]
fn demo_ends_with_the_vm_near_alice_and_her_session_alive() {
    let dir = tempfile::tempdir().unwrap();
    edgemig_testkit::open_to_qemu(dir.path());
    let name = format!("dm{}", std::process::id() % 100_000);
    let out = Command::new(env!("CARGO_BIN_EXE_edgemig"))
        .env("EDGEMIG_TESTBED_DIR", dir.path())
        .args([
            "--json",
            "demo",
            "--name",
            &name,
            "--seconds",
            "1",
            "--memory-mib",
            "128",
        ])
        .output()
        .expect("run the demo");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed: {stderr}");
    let s: Value = serde_json::from_slice(&out.stdout).expect("demo JSON");
    for key in [
        "vm_site",
        "connection_survived",
        "total_ms",
        "downtime_ms",
        "baseline_estimate_ms",
        "paths",
        "rtt_before_ms",
        "rtt_after_ms",
        "mbit_before",
        "mbit_after",
    ] {
        assert!(!s[key].is_null(), "{key} missing in {s}");
    }
    assert_eq!(s["vm_site"], "site-b", "{s}");
    assert_eq!(s["connection_survived"], true, "{s}\n{stderr}");
    let paths = s["paths"].as_array().unwrap();
    assert_eq!(paths.len(), 2);
    assert!(
        paths.iter().all(|p| p["bytes"].as_u64() > Some(1 << 20)),
        "both paths carry bytes: {s}"
    );
    // The demo removed its testbed.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    assert!(!std::path::Path::new(&format!("/run/netns/{name}_site-a")).exists());
}
