//! Faults injected for real during migrations, each ending with the VM
//! running at exactly one site, its memory and disk verified, and nothing
//! leaked: the source or the destination agent killed with SIGKILL in each
//! phase (the destination also while its incoming QEMU starts) and started
//! again (as `Restart=on-failure` would), both paths cut
//! at the switchover for longer than the peer timeout, a destination disk
//! that fills up during the mirror, an address taken at the destination,
//! another site's certificate acting on
//! someone else's migration, and a guest writing a 100 MiB line.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use edgemig_testkit::{SmallTmpfs, TestAgent, TestTestbed, alive, two_sites, wait_until};
use serde_json::Value;

fn cli_path() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_BIN_EXE_edgemig"))
}

const VM: &str = "sturdy";
const SITES: [&str; 2] = ["site-a", "site-b"];

/// The VM with a running memory writer and `disk_mib` written to its data
/// disk at `site`.
fn vm_with_workload(tb: &TestTestbed, site: &str, disk_mib: &str) {
    tb.busy_vm(site, VM, "96M", disk_mib);
}

/// `edgemig migrate` in the background (its outcome is read from the
/// agents, which may be killed under it).
struct Migration(Child);

impl Drop for Migration {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_migration(tb: &TestTestbed, from: &str, to: &str) -> Migration {
    let child = Command::new(cli_path())
        .env("EDGEMIG_TESTBED_DIR", tb.state_dir().parent().unwrap())
        .args([
            "--testbed",
            &tb.name,
            "--site",
            from,
            "--json",
            "migrate",
            VM,
        ])
        .args(["--to", to])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start edgemig migrate");
    Migration(child)
}

/// The running migration of the VM at `site`, if the agent answers.
fn running(tb: &TestTestbed, site: &str) -> Option<Value> {
    let out = tb.site_cli(site, &["--json", "migrations"]);
    let all: Value = serde_json::from_slice(&out.stdout).ok()?;
    all.as_array()?
        .iter()
        .find(|v| v["vm"] == VM && v["running"] == true)
        .cloned()
}

/// Waits until the source's migration is in one of `phases`; the phase.
fn wait_phase(tb: &TestTestbed, site: &str, phases: &[&str]) -> String {
    wait_until(
        &format!("phase {phases:?}"),
        Duration::from_secs(240),
        || {
            let phase = running(tb, site)?["phase"].as_str()?.to_string();
            phases.contains(&phase.as_str()).then_some(phase)
        },
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Waits until no migration of the VM runs at `site`.
fn wait_settled(tb: &TestTestbed, site: &str) {
    wait_until("the migration to end", Duration::from_secs(600), || {
        let out = tb.site_cli(site, &["--json", "migrations"]);
        out.status.success().then_some(())?;
        running(tb, site).is_none().then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}"));
}

fn agent(tb: &TestTestbed, action: &str, site: &str) {
    let out = tb.testbed(&["agent", action, site]);
    assert!(
        out.status.success(),
        "agent {action} {site}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The VM's state at `site`, `None` when the site does not have it.
fn state_at(tb: &TestTestbed, site: &str) -> Option<String> {
    let out = tb.site_cli(site, &["--json", "vm", "show", VM]);
    if !out.status.success() {
        return None;
    }
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    v["state"].as_str().map(str::to_string)
}

/// Pids of live QEMU processes of the VM at `site` (from the pid file,
/// checked against the process).
fn qemu_of(tb: &TestTestbed, site: &str) -> Option<u32> {
    let pidfile = tb
        .site_state_dir(site)
        .join("vms")
        .join(VM)
        .join("qemu.pid");
    let pid: u32 = std::fs::read_to_string(pidfile).ok()?.trim().parse().ok()?;
    alive(pid).then_some(pid)
}

/// The VM runs at exactly one site (by both agents and by the QEMU
/// processes themselves), which is returned, with memory and disk intact;
/// the other site holds nothing of it.
fn exactly_one(tb: &TestTestbed, disk_mib: &str) -> &'static str {
    let here = wait_until(
        "the VM settled at one site",
        Duration::from_secs(300),
        || {
            let states: Vec<_> = SITES.iter().map(|s| state_at(tb, s)).collect();
            let running: Vec<_> = SITES
                .iter()
                .zip(&states)
                .filter(|(_, s)| s.as_deref() == Some("running"))
                .map(|(site, _)| *site)
                .collect();
            assert!(running.len() <= 1, "the VM runs at two sites: {states:?}");
            let others_clear = SITES
                .iter()
                .zip(&states)
                .all(|(_, s)| s.is_none() || s.as_deref() == Some("running"));
            (running.len() == 1 && others_clear).then(|| running[0])
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let other = SITES.iter().find(|s| **s != here).unwrap();
    assert!(qemu_of(tb, here).is_some(), "QEMU runs at {here}");
    assert_eq!(qemu_of(tb, other), None, "no QEMU of the VM at {other}");
    let mem = tb.site_json(here, &["vm", "guest", VM, "mem-verify"]);
    assert_eq!(mem["bad_pages"], 0, "memory damaged at {here}: {mem}");
    assert_eq!(mem["pages"], 32 * 256);
    let disk = tb.site_json(
        here,
        &[
            "vm",
            "guest",
            VM,
            "disk-verify",
            "--mib",
            disk_mib,
            "--seed",
            "9",
        ],
    );
    assert_eq!(disk["ok"], true, "disk damaged at {here}: {disk}");
    here
}

/// No tunnel left at every site but `at`, where the VM runs.
fn nothing_left_except(tb: &TestTestbed, at: &str) {
    for site in SITES.iter().filter(|s| **s != at) {
        nothing_left(tb, site);
    }
}

/// No migration record or tunnel left at `site` once everything settled.
fn nothing_left(tb: &TestTestbed, site: &str) {
    wait_until("tunnels closed", Duration::from_secs(120), || {
        let links = tb.exec(site, &["ip", "-o", "link"]);
        let text = String::from_utf8_lossy(&links.stdout).into_owned();
        (!text.contains("emvx") && !text.contains("emtb")).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e} at {site}"));
}

#[test]
fn the_source_agent_killed_in_each_phase_recovers_without_splitting_the_vm() {
    let tb = TestTestbed::new(cli_path());
    tb.up(Some(&two_sites("20mbit", "5ms", None, false)));
    vm_with_workload(&tb, "site-a", "32");
    let mut at = "site-a";
    for phases in [
        &["preparing", "disk"][..],
        &["memory"][..],
        &["switchover", "awaiting_commit", "committed"][..],
        &["network"][..],
    ] {
        let to = if at == "site-a" { "site-b" } else { "site-a" };
        let m = start_migration(&tb, at, to);
        let seen = wait_phase(&tb, at, phases);
        agent(&tb, "kill", at);
        drop(m);
        std::thread::sleep(Duration::from_secs(2));
        agent(&tb, "start", at);
        wait_settled(&tb, at);
        let now = exactly_one(&tb, "32");
        eprintln!("source killed in {seen}: the VM runs at {now}");
        if phases.contains(&"network") {
            assert_eq!(now, to, "killed after the commit, the VM stays moved");
        }
        if phases == ["memory"] {
            assert_eq!(now, at, "killed before the switchover, the VM stays");
        }
        at = now;
    }
    nothing_left_except(&tb, at);
}

#[test]
fn the_destination_agent_killed_in_each_phase_recovers_without_splitting_the_vm() {
    let tb = TestTestbed::new(cli_path());
    tb.up(Some(&two_sites("20mbit", "5ms", None, false)));
    vm_with_workload(&tb, "site-a", "32");
    let mut at = "site-a";
    for phases in [
        &["preparing"][..],
        &["disk", "memory"][..],
        &["switchover", "awaiting_commit"][..],
        &["network"][..],
    ] {
        let to = if at == "site-a" { "site-b" } else { "site-a" };
        let m = start_migration(&tb, at, to);
        let seen = if phases == ["preparing"] {
            // Inside the preparation, while the destination's QEMU starts:
            // its pid is in no record yet, only in QEMU's pid file.
            let limit = Instant::now() + Duration::from_secs(240);
            while qemu_of(&tb, to).is_none() {
                assert!(Instant::now() < limit, "no incoming QEMU at {to}");
                std::thread::sleep(Duration::from_millis(5));
            }
            agent(&tb, "kill", to);
            assert!(
                qemu_of(&tb, to).is_some(),
                "the incoming QEMU runs on with its agent killed"
            );
            "preparing, as the incoming QEMU started".to_string()
        } else {
            let seen = wait_phase(&tb, at, phases);
            agent(&tb, "kill", to);
            seen
        };
        std::thread::sleep(Duration::from_secs(5));
        agent(&tb, "start", to);
        wait_settled(&tb, at);
        drop(m);
        let now = exactly_one(&tb, "32");
        eprintln!("destination killed in {seen}: the VM runs at {now}");
        at = now;
    }
    nothing_left_except(&tb, at);
}

#[test]
fn an_agent_restarted_where_the_vm_arrived_after_an_aborted_attempt_keeps_it() {
    let tb = TestTestbed::new(cli_path());
    tb.up(Some(&two_sites("50mbit", "5ms", None, false)));
    vm_with_workload(&tb, "site-a", "16");
    // An attempt site-b agreed to abort (cancelled at the source) ...
    let m = start_migration(&tb, "site-a", "site-b");
    wait_phase(&tb, "site-a", &["memory"]);
    let out = tb.site_cli("site-a", &["migrate", "cancel", VM]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_settled(&tb, "site-a");
    drop(m);
    assert_eq!(exactly_one(&tb, "16"), "site-a");
    // ... then the migration that brings the VM there.
    let m = start_migration(&tb, "site-a", "site-b");
    wait_settled(&tb, "site-a");
    drop(m);
    assert_eq!(exactly_one(&tb, "16"), "site-b");
    let pid = qemu_of(&tb, "site-b").expect("QEMU at site-b");
    // Restarted, site-b's agent must not apply the old abort to the VM.
    agent(&tb, "kill", "site-b");
    std::thread::sleep(Duration::from_secs(2));
    agent(&tb, "start", "site-b");
    assert_eq!(exactly_one(&tb, "16"), "site-b");
    assert_eq!(qemu_of(&tb, "site-b"), Some(pid), "the same QEMU runs on");
    nothing_left(&tb, "site-a");
}

#[test]
fn both_paths_cut_at_the_switchover_never_run_the_vm_twice() {
    let tb = TestTestbed::new(cli_path());
    tb.up(Some(&two_sites("20mbit", "5ms", None, false)));
    vm_with_workload(&tb, "site-a", "16");
    let m = start_migration(&tb, "site-a", "site-b");
    let seen = wait_phase(
        &tb,
        "site-a",
        &["switchover", "awaiting_commit", "committed"],
    );
    for path in ["path1", "path2"] {
        let out = tb.testbed(&["link", path, "set", "down"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Longer than the peer timeout: the source cannot learn the outcome.
    let cut = Instant::now();
    while cut.elapsed() < Duration::from_secs(45) {
        let a = state_at(&tb, "site-a");
        let b = state_at(&tb, "site-b");
        assert!(
            !(a.as_deref() == Some("running") && b.as_deref() == Some("running")),
            "the VM ran at two sites during the cut ({a:?}, {b:?})"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    for path in ["path1", "path2"] {
        let out = tb.testbed(&["link", path, "set", "up"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    wait_settled(&tb, "site-a");
    drop(m);
    let now = exactly_one(&tb, "16");
    eprintln!("paths cut in {seen}: the VM runs at {now}");
    let other = if now == "site-a" { "site-b" } else { "site-a" };
    nothing_left(&tb, other);
}

#[test]
fn a_destination_disk_that_fills_up_fails_the_migration_with_the_source_intact() {
    let tb = TestTestbed::new(cli_path());
    tb.up(Some(&two_sites("10mbit", "5ms", None, false)));
    vm_with_workload(&tb, "site-a", "64");
    let vms = tb.site_state_dir("site-b").join("vms");
    let tmpfs = SmallTmpfs::mount(&vms, 200);
    let m = start_migration(&tb, "site-a", "site-b");
    wait_phase(&tb, "site-a", &["disk"]);
    // Fill what is left of site-b's disk while the mirror writes to it.
    let filler = vms.join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=1M", "status=none"])
        .arg(format!("of={}", filler.display()))
        .status();
    wait_settled(&tb, "site-a");
    drop(m);
    let last = tb.site_json("site-a", &["migrations"]);
    let report = &last[0]["report"];
    assert_eq!(report["status"], "failed", "{last}");
    assert!(
        report["error"].as_str().is_some_and(|e| e.contains("disk")),
        "the report names the disk: {report}"
    );
    assert_eq!(exactly_one(&tb, "64"), "site-a");
    let _ = std::fs::remove_file(&filler);
    drop(tmpfs);
    nothing_left(&tb, "site-b");
}

/// A host on site-b's VM network answers ARP for the address the VM would
/// get there: the destination's probe refuses the migration before any
/// QEMU starts there, and the VM runs on at site-a.
#[test]
fn a_taken_address_at_the_destination_fails_the_migration_with_the_source_intact() {
    let tb = TestTestbed::new(cli_path());
    tb.up(Some(&two_sites("50mbit", "5ms", None, false)));
    vm_with_workload(&tb, "site-a", "16");
    let bridges = tb.exec("site-b", &["ip", "-o", "link", "show", "type", "bridge"]);
    let bridges = String::from_utf8_lossy(&bridges.stdout).into_owned();
    let bridge = bridges
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n))
        .find(|n| !n.starts_with("emtb"))
        .unwrap_or_else(|| panic!("no VM bridge at site-b: {bridges}"))
        .to_string();
    // The impostor: its own namespace, a veth into site-b's VM bridge,
    // holding the first address a VM gets there (deleted with its
    // namespace, whatever happens).
    let prefix = edgemig_testkit::unique_prefix();
    let impostor = edgemig_testkit::NetNs::new(&format!("{prefix}-imp"));
    let (ours, theirs) = (format!("{prefix}i0"), format!("{prefix}i1"));
    for argv in [
        vec![
            "ip",
            "link",
            "add",
            &ours,
            "type",
            "veth",
            "peer",
            "name",
            &theirs,
            "netns",
            impostor.name(),
        ],
        vec!["ip", "link", "set", &ours, "master", &bridge, "up"],
    ] {
        let out = tb.exec("site-b", &argv);
        assert!(
            out.status.success(),
            "{argv:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    impostor.exec(&["ip", "addr", "add", "10.20.0.2/24", "dev", &theirs]);
    impostor.exec(&["ip", "link", "set", &theirs, "up"]);

    let out = tb.cli(&[
        "--testbed",
        &tb.name,
        "--site",
        "site-a",
        "--json",
        "migrate",
        VM,
        "--to",
        "site-b",
    ]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let said = format!("{report} {}", String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "the migration must fail: {said}");
    assert!(
        said.contains("10.20.0.2") && said.contains("already in use"),
        "the error names the taken address: {said}"
    );
    assert_eq!(exactly_one(&tb, "16"), "site-a");
    nothing_left(&tb, "site-b");
    drop(impostor);
}

#[test]
fn another_sites_certificate_cannot_act_on_a_migration() {
    let tb = TestTestbed::new(cli_path());
    tb.up(Some(&three_sites()));
    vm_with_workload(&tb, "site-a", "16");
    let m = start_migration(&tb, "site-a", "site-b");
    wait_phase(&tb, "site-a", &["memory"]);
    let id = running(&tb, "site-a").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    // site-c holds a valid certificate of the same CA: it may talk to the
    // other agents, but not about this migration.
    let pki = tb.state_dir().join("pki");
    let tls = edgemig_pki::PeerTls::load(&edgemig_pki::SiteFiles::in_dir(&pki.join("site-c")))
        .expect("site-c's TLS files");
    let b_addr = peer_address(&tb, "site-c", "site-b");
    let a_addr = peer_address(&tb, "site-c", "site-a");
    let answers = edgemig_netns::in_netns(&tb.netns("site-c"), move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let b = edgemig_pki::PeerClient::new(&tls, b_addr, "site-b").unwrap();
            let a = edgemig_pki::PeerClient::new(&tls, a_addr, "site-a").unwrap();
            let t = Duration::from_secs(10);
            let mut out = Vec::new();
            for (client, method, path) in [
                (&b, hyper::Method::GET, format!("/v1/peer/migrations/{id}")),
                (
                    &b,
                    hyper::Method::POST,
                    format!("/v1/peer/migrations/{id}/commit"),
                ),
                (
                    &b,
                    hyper::Method::POST,
                    format!("/v1/peer/migrations/{id}/abort"),
                ),
                (
                    &a,
                    hyper::Method::POST,
                    format!("/v1/peer/migrations/{id}/tunnel/close"),
                ),
            ] {
                let r: Result<Value, _> = client.request_json(method, &path, None::<&()>, t).await;
                out.push((path, r.map_err(|e| e.to_string())));
            }
            out
        })
    })
    .unwrap();
    for (path, answer) in &answers {
        let err = answer.as_ref().expect_err(path);
        assert!(err.contains("HTTP 403"), "{path}: {err}");
    }
    wait_settled(&tb, "site-a");
    drop(m);
    assert_eq!(exactly_one(&tb, "16"), "site-b", "the migration went on");
}

/// Three sites in a row of paths, site-c with paths to both.
fn three_sites() -> String {
    let mut text = two_sites("20mbit", "5ms", None, false);
    text.push_str(
        r#"[[site]]
name = "site-c"
vm_subnet = "10.30.0.0/24"
[[path]]
between = ["site-a", "site-c"]
rate = "100mbit"
delay = "1ms"
[[path]]
between = ["site-b", "site-c"]
rate = "100mbit"
delay = "1ms"
"#,
    );
    text
}

/// The address `from`'s config reaches `to`'s agent at.
fn peer_address(tb: &TestTestbed, from: &str, to: &str) -> std::net::SocketAddr {
    let config =
        std::fs::read_to_string(tb.state_dir().join("sites").join(from).join("site.toml")).unwrap();
    let value: toml::Value = toml::from_str(&config).unwrap();
    let peer = value["peer"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["site"].as_str() == Some(to))
        .unwrap();
    peer["address"].as_str().unwrap().parse().unwrap()
}

#[test]
fn a_guest_writing_a_100_mib_line_does_not_grow_the_agent() {
    let agent = TestAgent::start(std::path::Path::new(env!("CARGO_BIN_EXE_edgemigd")));
    let client = agent.client();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let spec = edgemig_api::VmCreate::builtin("chatty", 256);
        client.create_vm(&spec).await.unwrap();
        client.start_vm("chatty").await.unwrap();
        client
            .guest("chatty", &edgemig_guest_proto::GuestRequest::Hello)
            .await
            .unwrap();
    });
    let pid = agent.pid().unwrap();
    let rss = || -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap()
    };
    let before = rss();
    rt.block_on(async {
        let reply = client
            .guest(
                "chatty",
                &edgemig_guest_proto::GuestRequest::Babble { mib: 100 },
            )
            .await
            .expect("the guest answers after its line");
        assert!(matches!(reply, edgemig_guest_proto::GuestReply::Hello(_)));
        // The channel still works.
        client
            .guest("chatty", &edgemig_guest_proto::GuestRequest::Hello)
            .await
            .unwrap();
    });
    let after = rss();
    assert!(
        after < before + 32 * 1024,
        "the agent held the line: {before} KiB -> {after} KiB"
    );
    assert!(
        agent.log().contains("dropped an oversized line"),
        "the drop is logged"
    );
}
