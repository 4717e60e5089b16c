//! The follow policy with real sites: a VM follows its client along a
//! scripted commute across three sites, migrating with handoff, the
//! client's MPTCP session alive throughout; with etcd as the directory,
//! a second controller holding the VM's lease keeps the site's controller
//! from acting until it lets go, and an etcd outage stops all decisions
//! while the VM keeps running.

use std::time::Duration;

use edgemig_testkit::{TestTestbed, TrafficClient, wait_until};
use serde_json::Value;

fn cli_path() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_BIN_EXE_edgemig"))
}

/// Sites a, b, c joined pairwise; alice near site-a at first.
fn three_sites(directory: &str) -> String {
    let mut text = format!("directory = {directory:?}\n");
    for (name, subnet) in [("site-a", 10), ("site-b", 20), ("site-c", 30)] {
        text.push_str(&format!(
            "[[site]]\nname = {name:?}\nvm_subnet = \"10.{subnet}.0.0/24\"\n"
        ));
    }
    for pair in [
        ["site-a", "site-b"],
        ["site-b", "site-c"],
        ["site-a", "site-c"],
    ] {
        text.push_str(&format!(
            "[[path]]\nbetween = {pair:?}\nrate = \"200mbit\"\ndelay = \"1ms\"\n"
        ));
    }
    text.push_str(
        r#"[[client]]
name = "alice"
links = [ { site = "site-a", rate = "100mbit", delay = "1ms" },
          { site = "site-b", rate = "100mbit", delay = "15ms" },
          { site = "site-c", rate = "100mbit", delay = "25ms" } ]
"#,
    );
    text
}

fn set_delay(tb: &TestTestbed, site: &str, delay: &str) {
    let out = tb.testbed(&[
        "link",
        &format!("alice-{site}"),
        "set",
        &format!("delay={delay}"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn runs_at(tb: &TestTestbed, site: &str, vm: &str) -> bool {
    let vms = tb.site_json(site, &["vm", "list"]);
    vms.as_array()
        .unwrap()
        .iter()
        .any(|v| v["name"] == vm && v["state"] == "running")
}

/// Starts VM `follower` at site-a; returns its address.
fn start_vm(tb: &TestTestbed) -> String {
    tb.site_json("site-a", &["vm", "create", "follower", "--memory", "128M"]);
    tb.site_json("site-a", &["vm", "start", "follower"]);
    tb.site_json("site-a", &["vm", "guest", "follower", "hello"]);
    let vm = tb.site_json("site-a", &["vm", "show", "follower"]);
    let address = vm["nics"][0]["address"].as_str().unwrap();
    address.split('/').next().unwrap().to_string()
}

/// Alice's echo session to the VM at `ip`, then the follow policy.
fn follow(tb: &TestTestbed, ip: &str, seconds: u32) -> TrafficClient {
    let session = TrafficClient::start(tb, "alice", &format!("{ip}:7000"), "echo", false, seconds);
    let shown = tb.site_json(
        "site-a",
        &["vm", "policy", "follower", "follow", "--hold", "4s"],
    );
    assert_eq!(shown["policy"]["spec"]["mode"], "follow", "{shown}");
    session
}

fn decision(tb: &TestTestbed, site: &str) -> Value {
    tb.site_json(site, &["vm", "show", "follower"])["policy"].clone()
}

#[test]
fn a_vm_follows_its_client_across_three_sites() {
    let tb = TestTestbed::new(cli_path());
    tb.up(Some(&three_sites("embedded")));
    // Bad input: a VM without a running guest agent is refused.
    tb.site_json("site-a", &["vm", "create", "idle", "--memory", "64M"]);
    let out = tb.site_cli("site-a", &["vm", "policy", "idle", "follow"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no running guest agent"));

    let ip = start_vm(&tb);
    let session = follow(&tb, &ip, 100);
    // At first site-a is best: the controller decides to stay.
    wait_until("a first decision", Duration::from_secs(30), || {
        decision(&tb, "site-a")["explanation"]
            .is_string()
            .then_some(())
    })
    .unwrap();
    let first = decision(&tb, "site-a");
    assert_eq!(first["decision"]["action"]["kind"], "stay", "{first}");

    // Alice moves near site-b, then near site-c: the VM follows.
    set_delay(&tb, "site-a", "20ms");
    set_delay(&tb, "site-b", "1ms");
    wait_until("the VM at site-b", Duration::from_secs(90), || {
        (runs_at(&tb, "site-b", "follower") && !runs_at(&tb, "site-a", "follower")).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}: {}", decision(&tb, "site-a")));
    set_delay(&tb, "site-b", "20ms");
    set_delay(&tb, "site-c", "1ms");
    wait_until("the VM at site-c", Duration::from_secs(90), || {
        (runs_at(&tb, "site-c", "follower") && !runs_at(&tb, "site-b", "follower")).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}: {}", decision(&tb, "site-b")));
    // The policy travelled with the VM and keeps deciding there.
    wait_until("a decision at site-c", Duration::from_secs(30), || {
        (decision(&tb, "site-c")["decision"]["current_site"] == "site-c").then_some(())
    })
    .unwrap();
    let last = decision(&tb, "site-c");
    assert_eq!(last["spec"]["hold_ms"], 4000, "{last}");
    let summary = session.summary();
    assert_eq!(summary["errors"], 0, "alice's session broke: {summary}");
    assert!(summary["probes"].as_u64() > Some(100), "{summary}");
    assert_eq!(summary["proto"], "mptcp", "{summary}");
}

/// A second controller: holds the VM's lease in the testbed's etcd (from
/// site-a's namespace, where etcd runs) until dropped.
struct Intruder {
    release: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Intruder {
    fn hold(tb: &TestTestbed, vm: &str) -> Self {
        use edgemig_directory::{Directory, EtcdDirectory};
        let (acquired_tx, acquired_rx) = std::sync::mpsc::channel();
        let (release, release_rx) = std::sync::mpsc::channel::<()>();
        let ns = tb.netns("site-a");
        let prefix = format!("/edgemig/{}", tb.name);
        let vm = vm.to_string();
        let thread = std::thread::spawn(move || {
            edgemig_netns::in_netns(&ns, move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    let etcd = EtcdDirectory::connect(&["http://127.0.0.1:2379".into()], &prefix)
                        .await
                        .expect("reach the testbed's etcd");
                    let dir = Directory::from(etcd);
                    let lease = dir
                        .acquire(&vm, "intruder", Duration::from_secs(6))
                        .await
                        .unwrap()
                        .expect("the lease is free before the policy is set");
                    acquired_tx.send(()).unwrap();
                    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                        release_rx.recv_timeout(Duration::from_secs(1))
                    {
                        assert!(dir.renew(&lease).await.unwrap(), "intruder lost its lease");
                    }
                    dir.release(lease).await.unwrap();
                });
            })
            .unwrap();
        });
        acquired_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the intruder holds the lease");
        Self {
            release: Some(release),
            thread: Some(thread),
        }
    }
}

impl Drop for Intruder {
    fn drop(&mut self) {
        drop(self.release.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Pid of the testbed's etcd, from its state file.
fn etcd_pid(tb: &TestTestbed) -> u32 {
    let state_file = tb
        .site_state_dir("site-a")
        .ancestors()
        .nth(3)
        .unwrap()
        .join("state.json");
    let state: Value = serde_json::from_slice(&std::fs::read(&state_file).unwrap()).unwrap();
    state["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["role"] == "etcd")
        .and_then(|p| p["pid"].as_u64())
        .and_then(|p| u32::try_from(p).ok())
        .expect("an etcd process in the testbed state")
}

#[test]
fn with_etcd_one_lease_means_one_controller_and_an_outage_means_no_decisions() {
    let tb = TestTestbed::new(cli_path());
    tb.up(Some(&three_sites("etcd")));
    let ip = start_vm(&tb);
    let intruder = Intruder::hold(&tb, "follower");
    let session = follow(&tb, &ip, 120);
    set_delay(&tb, "site-a", "20ms");
    set_delay(&tb, "site-b", "1ms");
    // Site-a's controller sees the other controller's lease and decides
    // nothing, although site-b is far better for alice now.
    wait_until(
        "site-a's controller to defer",
        Duration::from_secs(30),
        || {
            decision(&tb, "site-a")["status"]
                .as_str()
                .is_some_and(|s| s.contains("lease held by intruder"))
                .then_some(())
        },
    )
    .unwrap();
    std::thread::sleep(Duration::from_secs(10));
    assert!(
        runs_at(&tb, "site-a", "follower"),
        "moved without the lease"
    );
    assert!(
        decision(&tb, "site-a")["decision"].is_null(),
        "decided without the lease"
    );

    // Once it lets go, site-a's controller takes the lease and moves the VM.
    drop(intruder);
    wait_until("the VM at site-b", Duration::from_secs(90), || {
        (runs_at(&tb, "site-b", "follower") && !runs_at(&tb, "site-a", "follower")).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}: {}", decision(&tb, "site-a")));

    // etcd down: no decisions, a clear status, the VM keeps running.
    let pid = etcd_pid(&tb);
    edgemig_testkit::kill(pid, libc::SIGKILL);
    set_delay(&tb, "site-b", "20ms");
    set_delay(&tb, "site-c", "1ms");
    wait_until(
        "site-b's controller to stop deciding",
        Duration::from_secs(60),
        || {
            decision(&tb, "site-b")["status"]
                .as_str()
                .is_some_and(|s| s.contains("directory unavailable"))
                .then_some(())
        },
    )
    .unwrap();
    std::thread::sleep(Duration::from_secs(10));
    assert!(
        runs_at(&tb, "site-b", "follower"),
        "the VM must keep running at site-b"
    );
    let summary = session.summary();
    assert_eq!(summary["errors"], 0, "alice's session broke: {summary}");
}
