//! Transparent network handoff: a client keeps its connections while the
//! VM moves to another site and changes address. MPTCP clients move to the
//! new address; a plain TCP client keeps working through the tunnel; the
//! old address and the tunnel are gone afterwards.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use edgemig_testkit::{TestTestbed, TrafficClient, two_sites, wait_until};
use serde_json::Value;

fn cli_path() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_BIN_EXE_edgemig"))
}

/// A stock program made MPTCP by `mptcpize` (Debian's LD_PRELOAD wrapper):
/// `socat` talking to the guest's echo service, one line every 100 ms.
struct StockClient {
    child: Child,
    writer: std::thread::JoinHandle<usize>,
    reader: std::thread::JoinHandle<usize>,
}

impl StockClient {
    fn start(tb: &TestTestbed, target: &str) -> Self {
        use std::io::{BufRead, BufReader, Write};
        let mut child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &tb.netns("alice"),
                "mptcpize",
                "run",
                "socat",
                "-t",
                "5",
                "STDIO",
            ])
            .arg(format!("TCP:{target}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mptcpize run socat (packages mptcpize, socat)");
        let mut input = child.stdin.take().expect("stdin");
        let output = child.stdout.take().expect("stdout");
        let writer = std::thread::spawn(move || {
            let mut sent = 0;
            if input.write_all(b"E").is_err() {
                return 0;
            }
            for i in 0..200 {
                if writeln!(input, "line-{i:04}-{}", "x".repeat(7)).is_err() {
                    break;
                }
                sent += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            sent
        });
        let reader = std::thread::spawn(move || {
            BufReader::new(output)
                .lines()
                .map_while(Result::ok)
                .filter(|l| l.starts_with("line-"))
                .count()
        });
        Self {
            child,
            writer,
            reader,
        }
    }

    /// Waits for the 20 s of lines and their echoes; (sent, echoed).
    fn finish(mut self) -> (usize, usize) {
        let sent = self.writer.join().unwrap_or(0);
        let _ = self.child.wait();
        (sent, self.reader.join().unwrap_or(0))
    }
}

fn devices(tb: &TestTestbed, node: &str) -> String {
    String::from_utf8_lossy(&tb.exec(node, &["ip", "-o", "link"]).stdout).into_owned()
}

fn migrate(tb: &TestTestbed, from: &str, to: &str) -> Value {
    let out = tb.cli(&[
        "--testbed",
        &tb.name,
        "--site",
        from,
        "--json",
        "migrate",
        "mover",
        "--to",
        to,
    ]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert!(
        out.status.success(),
        "{report} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    report
}

/// A testbed with alice and VM `mover` (128 MiB) at site-a, its echo
/// service answering alice; the service's address.
fn mover_serving_alice(tb: &TestTestbed) -> &'static str {
    tb.up(Some(&two_sites("200mbit", "1ms", None, true)));
    tb.site_json("site-a", &["vm", "create", "mover", "--memory", "128M"]);
    tb.site_json("site-a", &["vm", "start", "mover"]);
    tb.site_json("site-a", &["vm", "guest", "mover", "hello"]);
    let old = "10.10.0.2:7000";
    wait_until(
        "the guest's service from alice",
        Duration::from_secs(30),
        || {
            let c = TrafficClient::start(tb, "alice", old, "echo", false, 1);
            (c.summary()["errors"] == 0).then_some(())
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    old
}

#[test]
fn clients_stay_connected_and_move_to_the_new_address() {
    let tb = TestTestbed::new(cli_path());
    let old = mover_serving_alice(&tb);

    let stock = StockClient::start(&tb, old);
    let echo = TrafficClient::start(&tb, "alice", old, "echo", false, 25);
    let bulk = TrafficClient::start(&tb, "alice", old, "bulk", false, 25);
    let plain = TrafficClient::start(&tb, "alice", old, "echo", true, 12);
    std::thread::sleep(Duration::from_secs(2));
    let report = migrate(&tb, "site-a", "site-b");
    assert_eq!(report["status"], "completed", "{report}");
    // The source staged the new address in the guest, which configured
    // its handoff NIC by itself when the carrier came up at site-b.
    let plans = tb.site_json("site-b", &["vm", "guest", "mover", "nic-plans"]);
    assert_eq!(plans["plans"][0]["state"], "applied", "{plans}");
    assert!(
        plans["plans"][0]["address"]
            .as_str()
            .is_some_and(|a| a.starts_with("10.20.0.")),
        "{plans}"
    );
    let net = &report["network"];
    assert_eq!(net["handoff"], "done", "{report}");
    assert!(
        net["new_address"]
            .as_str()
            .is_some_and(|a| a.starts_with("10.20.0.")),
        "{report}"
    );
    assert!(
        net["moved"].as_u64() >= Some(3),
        "MPTCP connections must move: {report}"
    );

    // The clients still run: their subflows are on the new address only.
    let conns = tb.site_json("site-b", &["vm", "guest", "mover", "net-status"]);
    let by_addr = conns["by_address"].as_array().expect("by_address");
    assert!(
        !by_addr.iter().any(|e| e[0] == "10.10.0.2"),
        "a subflow still uses the old address: {conns}"
    );
    assert!(
        by_addr
            .iter()
            .any(|e| e[0].as_str().is_some_and(|a| a.starts_with("10.20.0."))),
        "{conns}"
    );

    let (sent, echoed) = stock.finish();
    assert!(sent > 50, "the stock client ran: {sent}");
    assert_eq!(
        echoed, sent,
        "socat under mptcpize lost lines across the move"
    );

    let plain = plain.summary();
    assert_eq!(
        plain["errors"], 0,
        "the plain TCP client must survive through the tunnel: {plain}"
    );
    assert_eq!(plain["proto"], "tcp");
    let echo = echo.summary();
    assert_eq!(echo["errors"], 0, "{echo}");
    assert_eq!(echo["proto"], "mptcp");
    let bulk = bulk.summary();
    assert_eq!(bulk["errors"], 0, "{bulk}");

    // The old address and the tunnel are gone at both sites.
    let status = tb.site_json("site-b", &["vm", "show", "mover"]);
    assert_eq!(status["state"], "running");
    assert!(
        !devices(&tb, "site-a").contains("emvx"),
        "{}",
        devices(&tb, "site-a")
    );
    assert!(
        !devices(&tb, "site-b").contains("emtb"),
        "{}",
        devices(&tb, "site-b")
    );

    // New connections go straight to the new address; and the VM moves back.
    let new_addr = net["new_address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let direct =
        TrafficClient::start(&tb, "alice", &format!("{new_addr}:7000"), "echo", false, 1).summary();
    assert_eq!(direct["errors"], 0, "{direct}");
    let back = migrate(&tb, "site-b", "site-a");
    assert_eq!(back["status"], "completed", "{back}");
    assert_eq!(back["network"]["handoff"], "done", "{back}");
}

/// `nft ARGS` at `node`, which must succeed; its stdout.
fn nft(tb: &TestTestbed, node: &str, args: &[&str]) -> String {
    let mut argv = vec!["nft"];
    argv.extend_from_slice(args);
    let out = tb.exec(node, &argv);
    assert!(
        out.status.success(),
        "nft {args:?} (package nftables): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// ADD_ADDR options (MPTCP subtype 3) alice's drop rule counted.
fn dropped_announcements(tb: &TestTestbed) -> u64 {
    let listing = nft(tb, "alice", &["list", "chain", "inet", "emtest", "input"]);
    listing
        .split_whitespace()
        .skip_while(|w| *w != "packets")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no counter in {listing}"))
}

/// The guest's kernel gives an ADD_ADDR up after 3 re-sends: a client
/// that misses them all (here alice drops every ADD_ADDR, as a cut of
/// every path would lose them) stays on the old address. The destination
/// must announce the new address again, and the connections must move and
/// survive the old address's retirement.
#[test]
fn an_address_announcement_lost_in_the_handoff_is_made_again() {
    let tb = TestTestbed::new(cli_path());
    let old = mover_serving_alice(&tb);

    nft(&tb, "alice", &["add", "table", "inet", "emtest"]);
    nft(
        &tb,
        "alice",
        &[
            "add",
            "chain",
            "inet",
            "emtest",
            "input",
            "{ type filter hook input priority 0 ; }",
        ],
    );
    nft(
        &tb,
        "alice",
        &[
            "add", "rule", "inet", "emtest", "input", "tcp", "option", "mptcp", "subtype", "3",
            "counter", "drop",
        ],
    );
    let echo = TrafficClient::start(&tb, "alice", old, "echo", false, 45);
    let bulk = TrafficClient::start(&tb, "alice", old, "bulk", false, 45);
    std::thread::sleep(Duration::from_secs(2));
    let report = std::thread::scope(|s| {
        let migration = s.spawn(|| migrate(&tb, "site-a", "site-b"));
        // Each connection's ADD_ADDR and its 3 re-sends (2 s apart) are
        // dropped: 8 for the two connections, the last one 6 s after the
        // first. Then alice lets announcements through again, before the
        // destination's first new one (8 s after its own).
        wait_until(
            "the guest's kernel to send its last announcement",
            Duration::from_secs(300),
            || (dropped_announcements(&tb) >= 8).then_some(()),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        nft(&tb, "alice", &["delete", "table", "inet", "emtest"]);
        migration.join().expect("the migration thread")
    });
    assert_eq!(report["status"], "completed", "{report}");
    let net = &report["network"];
    assert_eq!(net["handoff"], "done", "{report}");
    assert!(
        net["reannounced"].as_u64() >= Some(1),
        "the address must be announced again: {report}"
    );
    assert!(
        net["moved"].as_u64() >= Some(2),
        "both MPTCP connections must move: {report}"
    );
    assert_eq!(net["on_old"], 0, "{report}");
    let conns = tb.site_json("site-b", &["vm", "guest", "mover", "net-status"]);
    let by_addr = conns["by_address"].as_array().expect("by_address");
    assert!(
        !by_addr.iter().any(|e| e[0] == "10.10.0.2"),
        "a subflow still uses the old address: {conns}"
    );
    let echo = echo.summary();
    assert_eq!(echo["errors"], 0, "{echo}");
    assert_eq!(echo["proto"], "mptcp");
    let bulk = bulk.summary();
    assert_eq!(bulk["errors"], 0, "{bulk}");
}
