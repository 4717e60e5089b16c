//! The edge testbed for real: namespaces, user-space link emulators, MPTCP
//! endpoints and site agents, brought up and removed through the CLI.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use edgemig_testkit::{TestTestbed, alive, kill, two_sites, wait_until, workspace_target};
use serde_json::Value;

fn cli_path() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_BIN_EXE_edgemig"))
}

fn guest_tool() -> std::path::PathBuf {
    workspace_target().join("x86_64-unknown-linux-gnu/release/edgemig-guest")
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn status(tb: &TestTestbed) -> Value {
    let out = tb.cli(&["--json", "testbed", "status", "--name", &tb.name]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("status JSON")
}

/// Average RTT of 5 pings from `node` to `addr`, or None when none came back.
fn ping_avg_ms(tb: &TestTestbed, node: &str, addr: &str) -> Option<f64> {
    let out = tb.exec(
        node,
        &["busybox", "ping", "-c", "5", "-i", "0.2", "-W", "1", addr],
    );
    let text = stdout(&out);
    let line = text.lines().find(|l| l.contains("round-trip"))?;
    let avg = line.split('=').nth(1)?.split('/').nth(1)?;
    avg.trim().parse().ok()
}

fn small() -> String {
    two_sites("100mbit", "15ms", Some("2ms"), false)
}

#[test]
fn default_testbed_comes_up_and_down_leaving_nothing() {
    let tb = TestTestbed::new(cli_path());
    tb.up(None);
    let s = status(&tb);
    assert_eq!(s["complete"], true);
    let sites = s["sites"].as_array().expect("sites");
    assert_eq!(sites.len(), 2);
    assert!(sites.iter().all(|x| x["agent_running"] == true), "{s}");
    assert_eq!(s["links"].as_array().map(Vec::len), Some(4));
    assert_eq!(tb.namespaces().len(), 3);
    // alice reaches each site's VM subnet through that site's access link only.
    let routes = stdout(&tb.exec("alice", &["ip", "route"]));
    assert!(routes.contains("10.10.0.0/24 via 172.30.1.1"), "{routes}");
    assert!(routes.contains("10.20.0.0/24 via 172.30.2.1"), "{routes}");
    assert!(
        !routes.contains("default"),
        "no namespace gets a default route: {routes}"
    );
    // MPTCP: limits and one signal endpoint per path on each site.
    let endpoints = stdout(&tb.exec("site-a", &["ip", "mptcp", "endpoint", "show"]));
    assert!(
        endpoints.contains("172.31.1.1") && endpoints.contains("172.31.2.1"),
        "{endpoints}"
    );
    // Socket buffers of a migration host: little unsent data per socket,
    // send buffers sized to the paths.
    for site in ["site-a", "site-b"] {
        let sysctl = |key: &str| {
            stdout(&tb.exec(site, &["cat", &edgemig_netns::sysctl::proc_path(key)]))
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(
            sysctl("net.ipv4.tcp_notsent_lowat"),
            edgemig_netns::sysctl::MIGRATION_NOTSENT_LOWAT.to_string()
        );
        assert_eq!(
            sysctl("net.ipv4.tcp_wmem"),
            edgemig_netns::sysctl::TESTBED_TCP_WMEM
        );
        assert_eq!(
            sysctl("net.ipv4.ip_local_reserved_ports"),
            edgemig_netns::sysctl::migration_reserved_ports()
        );
    }
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(tb.state_dir().join("state.json")).unwrap())
            .unwrap();
    let pids: Vec<u32> = state["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pid"].as_u64().unwrap() as u32)
        .collect();
    assert_eq!(pids.len(), 6, "4 emulators + 2 agents");
    assert!(pids.iter().all(|p| alive(*p)));

    let again = tb.try_up(None);
    assert!(!again.status.success());
    assert!(stderr(&again).contains("already up"), "{}", stderr(&again));

    let down = tb.testbed(&["down"]);
    assert!(down.status.success(), "{}", stderr(&down));
    assert!(
        tb.namespaces().is_empty(),
        "namespaces left: {:?}",
        tb.namespaces()
    );
    assert!(!tb.state_dir().exists());
    wait_until("testbed processes to exit", Duration::from_secs(10), || {
        pids.iter().all(|p| !alive(*p)).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn path_delay_shows_in_rtt_and_link_down_stops_traffic() {
    let tb = TestTestbed::new(cli_path());
    tb.up(Some(&small()));
    let rtt1 = ping_avg_ms(&tb, "site-a", "172.31.1.2").expect("ping over path1");
    let rtt2 = ping_avg_ms(&tb, "site-a", "172.31.2.2").expect("ping over path2");
    assert!(rtt1 >= 30.0, "path1 RTT {rtt1} ms below 2 x 15 ms");
    assert!(
        rtt2 >= 4.0 && rtt2 < rtt1,
        "path2 RTT {rtt2} ms (path1 {rtt1} ms)"
    );

    let out = tb.testbed(&["link", "path1", "set", "down"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        ping_avg_ms(&tb, "site-a", "172.31.1.2"),
        None,
        "path1 is down"
    );
    assert!(
        ping_avg_ms(&tb, "site-a", "172.31.2.2").is_some(),
        "path2 still up"
    );

    let out = tb.testbed(&["link", "path1", "set", "up", "delay=25ms"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rtt = ping_avg_ms(&tb, "site-a", "172.31.1.2").expect("path1 back up");
    assert!(rtt >= 50.0, "new delay not applied: {rtt} ms");

    let bad = tb.testbed(&["link", "path9", "set", "down"]);
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("no link \"path9\""),
        "{}",
        stderr(&bad)
    );
    let bad = tb.testbed(&["link", "path1", "set", "rate=fast"]);
    assert!(!bad.status.success());
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        kill(self.0.id(), libc::SIGKILL);
        let _ = self.0.wait();
    }
}

#[test]
fn mptcp_between_sites_uses_both_paths() {
    let tb = TestTestbed::new(cli_path());
    tb.up(Some(&small()));
    let server = Server(
        Command::new("ip")
            .args(["netns", "exec", &tb.netns("site-b")])
            .arg(guest_tool())
            .args(["serve", "--listen", "0.0.0.0:7100"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start server"),
    );
    let addr = "172.31.1.2:7100";
    wait_until("server listening", Duration::from_secs(10), || {
        let out = tb.exec(
            "site-a",
            &[
                guest_tool().to_str()?,
                "client",
                "--connect",
                addr,
                "echo",
                "--duration",
                "0.3",
            ],
        );
        out.status.success().then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let out = tb.exec(
        "site-a",
        &[
            guest_tool().to_str().unwrap(),
            "client",
            "--connect",
            addr,
            "bulk",
            "--duration",
            "3",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let summary: Value =
        serde_json::from_str(stdout(&out).lines().last().unwrap_or_default()).unwrap();
    assert_eq!(summary["proto"], "mptcp");
    let s = status(&tb);
    let bytes = |name: &str| {
        s["links"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == name)
            .and_then(|l| l["stats"]["stats"]["b_to_a"]["bytes_forwarded"].as_u64())
            .unwrap_or(0)
    };
    let (p1, p2) = (bytes("path1"), bytes("path2"));
    assert!(
        p1 > 2_000_000 && p2 > 2_000_000,
        "both paths must carry the stream: path1 {p1} B, path2 {p2} B"
    );
    drop(server);
}

#[test]
fn bad_configs_are_rejected_before_anything_is_created() {
    let tb = TestTestbed::new(cli_path());
    let cases = [
        (
            "[[site]]\nname = \"a\"\nvm_subnet = \"10.1.0.0/24\"\n[[path]]\nbetween = [\"a\", \"zz\"]\nrate = \"1mbit\"\n",
            "unknown site \"zz\"",
        ),
        (
            "[[site]]\nname = \"a\"\nvm_subnet = \"10.1.0.0/24\"\n[[site]]\nname = \"b\"\nvm_subnet = \"10.1.0.0/25\"\n",
            "overlaps",
        ),
        (
            "[[site]]\nname = \"a\"\nvm_subnet = \"10.1.0.0/24\"\n[[site]]\nname = \"b\"\nvm_subnet = \"10.2.0.0/24\"\n[[path]]\nbetween = [\"a\", \"b\"]\nrate = \"1mbit\"\ndelay = \"soon\"\n",
            "delay",
        ),
        (
            "[[site]]\nname = \"a\"\nvm_subnet = \"10.1.0.0/24\"\n[[path]]\nbetween = [\"a\", \"a\"]\nrate = \"1mbit\"\n",
            "to itself",
        ),
    ];
    for (config, why) in cases {
        let out = tb.try_up(Some(config));
        assert!(!out.status.success(), "accepted a bad config ({why})");
        let err = stderr(&out);
        assert!(err.contains(why), "error for {why:?} was: {err}");
        assert!(
            tb.namespaces().is_empty(),
            "namespaces created for a bad config"
        );
        assert!(!tb.state_dir().exists(), "state left for a bad config");
    }
    let out = tb.cli(&["testbed", "down", "--name", &tb.name]);
    assert!(
        !out.status.success(),
        "down of a testbed that never existed must fail"
    );
    let out = tb.cli(&["testbed", "up", "--name", "Bad_Name"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("Invalid testbed name"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bench_links_reports_every_field() {
    let dir = tempfile::tempdir().unwrap();
    edgemig_testkit::open_to_qemu(dir.path());
    let out = Command::new(cli_path())
        .env("EDGEMIG_TESTBED_DIR", dir.path())
        .args(["--json", "bench", "links", "--seconds", "1", "--sweep", ""])
        .output()
        .expect("run bench");
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).expect("bench JSON");
    let check_paths = |paths: &Value| {
        let paths = paths.as_array().expect("paths");
        assert_eq!(paths.len(), 2);
        for p in paths {
            for field in [
                "name",
                "rate_mbit",
                "measured_mbit",
                "delay_ms",
                "rtt_ms",
                "rate_error_pct",
                "rtt_excess_ms",
                "within_tolerance",
            ] {
                assert!(!p[field].is_null(), "{field} missing in {p}");
            }
            assert!(p["measured_mbit"].as_f64() > Some(0.0), "{p}");
            // The figures agree with each other: the error is the measured
            // rate against the configured one, the excess the RTT above
            // twice the delay; a path is within tolerance exactly when both
            // are.
            let rate = p["rate_mbit"].as_f64().unwrap();
            let measured = p["measured_mbit"].as_f64().unwrap();
            let error = p["rate_error_pct"].as_f64().unwrap();
            assert!(
                (error - 100.0 * (measured / rate - 1.0)).abs() < 1e-6,
                "{p}"
            );
            let excess = p["rtt_excess_ms"].as_f64().unwrap();
            let rtt = p["rtt_ms"].as_f64().unwrap();
            assert!(rtt > 0.0, "{p}");
            let delay = p["delay_ms"].as_f64().unwrap();
            assert!((excess - (rtt - 2.0 * delay)).abs() < 1e-6, "{p}");
            let tolerances = &report["tolerances"];
            let within = error.abs() <= tolerances["rate_pct"].as_f64().unwrap()
                && excess.abs() <= tolerances["rtt_ms"].as_f64().unwrap();
            assert_eq!(p["within_tolerance"].as_bool(), Some(within), "{p}");
        }
    };
    check_paths(&report["paths"]);
    for field in [
        "mptcp_mbit",
        "tcp_mbit",
        "mptcp_speedup",
        "emulator_cpu_per_100mbit",
    ] {
        assert!(report[field].as_f64() > Some(0.0), "{field} in {report}");
    }
    // The same paths measured with a busy TCG guest: its QEMU did use CPU.
    let loaded = &report["loaded"];
    assert!(
        !loaded["guest"].as_str().unwrap_or("").is_empty(),
        "{loaded}"
    );
    assert!(loaded["guest_cpu_cores"].as_f64() > Some(0.0), "{loaded}");
    check_paths(&loaded["paths"]);
    // The benchmark removed its testbed.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
