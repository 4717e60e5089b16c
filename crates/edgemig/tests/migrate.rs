//! Live migration between two testbed sites with real guests: memory and
//! disk survive, both paths carry the stream, failures and cancellation
//! leave the source VM running and intact, unauthenticated peers change
//! nothing.

use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use edgemig::exit;
use edgemig_testkit::{NetNs, TestTestbed, alive, kill, two_sites, wait_until};
use serde_json::Value;

fn cli_path() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_BIN_EXE_edgemig"))
}

fn fast() -> String {
    two_sites("200mbit", "1ms", None, false)
}

fn slow() -> String {
    two_sites("20mbit", "5ms", None, false)
}

/// Asserts the CLI exited with `expected`; `what` prefixes the message.
fn assert_exit(out: &Output, expected: u8, what: &str) {
    assert_eq!(
        out.status.code().unwrap_or(-1),
        i32::from(expected),
        "{what}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A VM with a running memory writer and a written data disk at `site`.
fn vm_with_workload(tb: &TestTestbed, site: &str, name: &str) {
    tb.busy_vm(site, name, "64M", "16");
}

fn assert_intact(tb: &TestTestbed, site: &str, name: &str) {
    let mem = tb.site_json(site, &["vm", "guest", name, "mem-verify"]);
    assert_eq!(mem["bad_pages"], 0, "memory damaged at {site}: {mem}");
    assert_eq!(mem["pages"], 32 * 256);
    let disk = tb.site_json(
        site,
        &[
            "vm",
            "guest",
            name,
            "disk-verify",
            "--mib",
            "16",
            "--seed",
            "9",
        ],
    );
    assert_eq!(disk["ok"], true, "disk damaged at {site}: {disk}");
}

fn vm_names(tb: &TestTestbed, site: &str) -> Vec<String> {
    tb.site_json(site, &["vm", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn migrate(tb: &TestTestbed, from: &str, vm: &str, extra: &[&str]) -> (Output, Value) {
    let mut args = vec!["--json", "migrate", vm];
    args.extend_from_slice(extra);
    let out = tb.site_cli(from, &args);
    let report = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out, report)
}

#[test]
fn migration_round_trip_keeps_memory_and_disk() {
    let tb = TestTestbed::new(cli_path());
    tb.up(Some(&fast()));
    vm_with_workload(&tb, "site-a", "roamer");

    let (out, report) = migrate(&tb, "site-a", "roamer", &["--to", "site-b"]);
    assert!(
        out.status.success(),
        "{}\n{report}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(report["status"], "completed", "{report}");
    assert_eq!(report["transport"], "mptcp");
    assert_eq!(report["insecure"], false);
    for key in ["total_ms", "downtime_ms", "disk_bytes", "memory_bytes"] {
        assert!(report[key].as_u64() > Some(0), "{key} in {report}");
    }
    let paths = report["paths"].as_array().expect("paths");
    assert_eq!(paths.len(), 2, "{report}");
    assert!(
        paths.iter().all(|p| p["bytes"].as_u64() > Some(1 << 20)),
        "both paths must carry the migration: {report}"
    );
    // Subflow bytes are attributed to the interface carrying their local
    // address, and together they carry at least the stream QEMU reports.
    assert!(
        paths.iter().all(|p| p["name"]
            .as_str()
            .unwrap_or("")
            .parse::<std::net::IpAddr>()
            .is_err()),
        "paths are named after the migration interfaces: {report}"
    );
    let on_paths: u64 = paths.iter().filter_map(|p| p["bytes"].as_u64()).sum();
    // (disk_bytes counts the mirror's progress, zero areas included, so
    // only the memory stream is a lower bound of what crossed the paths.)
    let memory = report["memory_bytes"].as_u64().unwrap();
    assert!(
        on_paths * 10 >= memory * 9,
        "paths carried {on_paths} B of a {memory} B memory stream: {report}"
    );
    assert!(
        vm_names(&tb, "site-a").is_empty(),
        "the source VM must be gone"
    );
    assert_eq!(vm_names(&tb, "site-b"), vec!["roamer".to_string()]);
    assert_intact(&tb, "site-b", "roamer");

    // And back, with the plain-QEMU baseline and no TLS (said in the report).
    let (out, report) = migrate(
        &tb,
        "site-b",
        "roamer",
        &["--to", "site-a", "--transport", "tcp", "--insecure"],
    );
    assert!(
        out.status.success(),
        "{}\n{report}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(report["transport"], "tcp");
    assert_eq!(report["compression"], "none");
    assert_eq!(report["insecure"], true);
    assert!(vm_names(&tb, "site-b").is_empty());
    assert_intact(&tb, "site-a", "roamer");
    let history = tb.site_json("site-b", &["migrations"]);
    assert_eq!(history[0]["report"]["to"], "site-a", "{history}");

    // The Prometheus endpoint counts the completed migration.
    let metrics = http_get(&tb.state_dir().join("sites/site-a/api.sock"), "/metrics");
    assert!(
        metrics.contains("edgemig_migrations_total{site=\"site-a\",status=\"completed\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("edgemig_vms{site=\"site-a\",state=\"running\"} 1"),
        "{metrics}"
    );
}

#[test]
fn a_guest_dirtying_faster_than_the_paths_moves_in_postcopy_intact() {
    let tb = TestTestbed::new(cli_path());
    tb.up(Some(&slow()));
    tb.site_json("site-a", &["vm", "create", "busy", "--memory", "192M"]);
    tb.site_json("site-a", &["vm", "start", "busy"]);
    tb.site_json("site-a", &["vm", "guest", "busy", "hello"]);
    // Flat out: far more than the two 20 Mbit/s paths carry.
    tb.site_json(
        "site-a",
        &["vm", "guest", "busy", "mem-write", "--mib", "48"],
    );

    let (out, report) = migrate(
        &tb,
        "site-a",
        "busy",
        &["--to", "site-b", "--postcopy", "fallback"],
    );
    assert!(
        out.status.success(),
        "{}\n{report}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(report["status"], "completed", "{report}");
    let postcopy = report["phases"]["postcopy_ms"].as_u64();
    assert!(
        postcopy.is_some(),
        "the migration never switched to postcopy: {report}"
    );
    let downtime = report["downtime_ms"].as_u64().expect("downtime");
    assert!(
        report["blackout"]["resumed_ms"].as_u64() == Some(downtime),
        "the blackout ends with the downtime: {report}"
    );
    assert!(
        vm_names(&tb, "site-a").is_empty(),
        "the source copy is gone"
    );
    let mem = tb.site_json("site-b", &["vm", "guest", "busy", "mem-verify"]);
    assert_eq!(mem["bad_pages"], 0, "memory damaged by postcopy: {mem}");
    assert_eq!(mem["pages"], 48 * 256, "{mem}");
}

/// A raw HTTP/1.0 GET over the agent's Unix socket.
fn http_get(socket: &std::path::Path, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket).expect("connect to the agent");
    write!(s, "GET {path} HTTP/1.0\r\nhost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

struct Migration(Child);

impl Drop for Migration {
    fn drop(&mut self) {
        kill(self.0.id(), libc::SIGKILL);
        let _ = self.0.wait();
    }
}

/// Starts `edgemig migrate` in the background.
fn start_migration(tb: &TestTestbed, from: &str, vm: &str, to: &str) -> Migration {
    let child = Command::new(cli_path())
        .env("EDGEMIG_TESTBED_DIR", tb.state_dir().parent().unwrap())
        .args([
            "--testbed",
            &tb.name,
            "--site",
            from,
            "--json",
            "migrate",
            vm,
            "--to",
            to,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start edgemig migrate");
    Migration(child)
}

fn wait_phase(tb: &TestTestbed, site: &str, vm: &str, phase: &str) {
    wait_until(
        &format!("migration phase {phase}"),
        Duration::from_secs(120),
        || {
            let view = tb.site_json(site, &["migrations"]);
            let current = view
                .as_array()?
                .iter()
                .find(|v| v["vm"] == vm && v["running"] == true)?
                .clone();
            (current["progress"]["phase"] == phase).then_some(())
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
}

fn finish(m: Migration) -> (bool, Value) {
    let mut m = m;
    let child = std::mem::replace(&mut m.0, Command::new("true").spawn().expect("spawn true"));
    let out = child.wait_with_output().expect("wait for edgemig migrate");
    (
        out.status.success(),
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
    )
}

#[test]
fn destination_dying_mid_migration_leaves_the_source_running_and_intact() {
    let tb = TestTestbed::new(cli_path());
    tb.up(Some(&slow()));
    vm_with_workload(&tb, "site-a", "sturdy");
    let m = start_migration(&tb, "site-a", "sturdy", "site-b");
    wait_phase(&tb, "site-a", "sturdy", "memory");
    let arriving = tb.site_json("site-b", &["vm", "show", "sturdy"]);
    assert_eq!(arriving["state"], "incoming", "{arriving}");
    let pid = u32::try_from(arriving["pid"].as_u64().expect("destination pid")).unwrap();
    assert!(alive(pid));
    kill(pid, libc::SIGKILL);
    let (ok, report) = finish(m);
    assert!(!ok, "a migration whose destination died must fail");
    assert_eq!(report["status"], "failed", "{report}");
    assert!(
        report["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{report}"
    );
    let shown = tb.site_json("site-a", &["vm", "show", "sturdy"]);
    assert_eq!(shown["state"], "running");
    assert_intact(&tb, "site-a", "sturdy");
    assert!(
        vm_names(&tb, "site-b").is_empty(),
        "the destination must be cleaned up"
    );
}

#[test]
fn cancel_stops_a_migration_and_a_path_going_down_does_not() {
    let tb = TestTestbed::new(cli_path());
    tb.up(Some(&slow()));
    vm_with_workload(&tb, "site-a", "wanderer");

    let m = start_migration(&tb, "site-a", "wanderer", "site-b");
    wait_phase(&tb, "site-a", "wanderer", "memory");
    let out = tb.site_cli("site-a", &["migrate", "cancel", "wanderer"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (ok, report) = finish(m);
    assert!(!ok);
    assert_eq!(report["status"], "cancelled", "{report}");
    assert_intact(&tb, "site-a", "wanderer");
    assert!(vm_names(&tb, "site-b").is_empty());

    let m = start_migration(&tb, "site-a", "wanderer", "site-b");
    wait_phase(&tb, "site-a", "wanderer", "memory");
    let out = tb.testbed(&["link", "path2", "set", "down"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (ok, report) = finish(m);
    assert!(ok, "losing one path must not fail the migration: {report}");
    assert_eq!(report["status"], "completed");
    assert_intact(&tb, "site-b", "wanderer");
}

#[test]
fn bad_migrations_are_refused_and_unauthenticated_peers_change_nothing() {
    let tb = TestTestbed::new(cli_path());
    tb.up(Some(&fast()));
    tb.site_json("site-a", &["vm", "create", "idle", "--memory", "64M"]);
    let out = tb.site_cli("site-a", &["migrate", "idle", "--to", "site-b"]);
    assert_exit(&out, exit::CONFLICT, "not running: ");
    tb.site_json("site-a", &["vm", "start", "idle"]);
    let out = tb.site_cli("site-a", &["migrate", "idle", "--to", "site-z"]);
    assert_exit(&out, exit::NOT_FOUND, "");
    let out = tb.site_cli("site-a", &["migrate", "idle", "--to", "site-a"]);
    assert_exit(&out, exit::INVALID, "");
    let out = tb.site_cli("site-a", &["migrate", "ghost", "--to", "site-b"]);
    assert_exit(&out, exit::NOT_FOUND, "");
    let out = tb.site_cli(
        "site-a",
        &["migrate", "idle", "--to", "site-b", "--compression", "lz9"],
    );
    assert!(!out.status.success());

    // A host squatting on the address site-b would give the VM: refused
    // before anything moves, the VM keeps running at site-a.
    {
        let squatter = NetNs::new(&format!("{}_squat", tb.name));
        let site_toml = std::fs::read_to_string(
            tb.site_state_dir("site-b")
                .parent()
                .unwrap()
                .join("site.toml"),
        )
        .unwrap();
        let bridge = site_toml
            .lines()
            .find_map(|l| l.strip_prefix("bridge = "))
            .unwrap()
            .trim_matches('"')
            .to_string();
        let site_b = tb.netns("site-b");
        squatter.exec(&[
            "ip", "link", "add", "sq0", "type", "veth", "peer", "name", "sq1", "netns", &site_b,
        ]);
        squatter.exec(&["ip", "addr", "add", "10.20.0.2/24", "dev", "sq0"]);
        squatter.exec(&["ip", "link", "set", "sq0", "up"]);
        let up = Command::new("ip")
            .args(["-n", &site_b, "link", "set", "sq1", "master", &bridge, "up"])
            .status()
            .unwrap();
        assert!(up.success());
        let (out, report) = migrate(&tb, "site-a", "idle", &["--to", "site-b"]);
        assert!(
            !out.status.success(),
            "migration onto a taken address succeeded"
        );
        let error = report["error"].as_str().unwrap_or_default().to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            error.contains("10.20.0.2 for VM \"idle\" is already in use"),
            "{error}"
        );
        assert_eq!(
            tb.site_json("site-a", &["vm", "show", "idle"])["state"],
            "running"
        );
        assert!(
            vm_names(&tb, "site-b").is_empty(),
            "the destination kept the refused VM"
        );
    }

    // A peer without a client certificate: plain HTTP to the peer port gets
    // no answer and creates nothing.
    let answer = edgemig_netns::in_netns(&tb.netns("site-a"), || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect("172.31.1.2:7700").expect("connect to the peer port");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let body = r#"{"vm":{"name":"evil","memory_mib":64,"vcpus":1,"disk_mib":null,"mac_seed":1,"address":"10.10.0.9"},"source_site":"site-a","mptcp":true,"tls":false,"capabilities":[],"parameters":{}}"#;
        let req = format!(
            "POST /v1/peer/incoming HTTP/1.1\r\nhost: x\r\nx-edgemig-protocol: 1\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let _ = s.write_all(req.as_bytes());
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
    .expect("enter site-a");
    assert!(
        !answer.starts_with("HTTP/1.1 2"),
        "unauthenticated request accepted: {answer}"
    );
    assert!(
        vm_names(&tb, "site-b").is_empty(),
        "an unauthenticated request created a VM"
    );
}
