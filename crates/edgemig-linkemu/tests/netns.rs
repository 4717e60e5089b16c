//! End-to-end test (root only): two network namespaces joined by the
//! emulator binary; ping RTT reflects the delay; up/down via the control
//! socket. Skips when not root or when `ip`/`busybox` are missing.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn have(cmd: &str) -> bool {
    Command::new(cmd)
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Deletes the namespace on drop.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("emle{}{tag}{n}", std::process::id());
        sh(&["ip", "netns", "add", &name]);
        sh(&["ip", "-n", &name, "link", "set", "lo", "up"]);
        Self(name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Kills the emulator on drop.
struct Emu {
    child: Child,
    control: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Emu {
    fn drop(&mut self) {
        // SAFETY: signalling our own child by pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        for _ in 0..50 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Emu {
    fn start(a: &Netns, b: &Netns, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let control = dir.path().join("ctl.sock");
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id() % 1_000_000;
        let (ta, tb) = (format!("emla{pid}x{n}"), format!("emlb{pid}x{n}"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_edgemig-linkemu"))
            .args([
                "--tap-a",
                &ta,
                "--netns-a",
                &a.0,
                "--tap-b",
                &tb,
                "--netns-b",
                &b.0,
            ])
            .arg("--control")
            .arg(&control)
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn emulator: {e}"));
        let stdout = child.stdout.take();
        let mut emu = Self {
            child,
            control,
            _dir: dir,
        };
        let mut line = String::new();
        if let Some(out) = stdout {
            let _ = BufReader::new(out).read_line(&mut line);
        }
        assert_eq!(line.trim(), "ready", "emulator did not start");
        sh(&["ip", "-n", &a.0, "addr", "add", "10.251.7.1/24", "dev", &ta]);
        sh(&["ip", "-n", &b.0, "addr", "add", "10.251.7.2/24", "dev", &tb]);
        emu.control_ok(r#"{"stats":true}"#);
        emu
    }

    /// User + system CPU time of the emulator in clock ticks.
    fn cpu_ticks(&self) -> Option<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).ok()?;
        let rest = stat.rsplit_once(')')?.1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
    }

    fn control(&self, req: &str) -> serde_json::Value {
        let mut s = UnixStream::connect(&self.control).unwrap_or_else(|e| panic!("connect: {e}"));
        writeln!(s, "{req}").unwrap_or_else(|e| panic!("send: {e}"));
        let mut line = String::new();
        BufReader::new(s)
            .read_line(&mut line)
            .unwrap_or_else(|e| panic!("recv: {e}"));
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("answer {line:?}: {e}"))
    }

    fn control_ok(&mut self, req: &str) -> serde_json::Value {
        let v = self.control(req);
        assert_eq!(v["ok"], true, "{req} -> {v}");
        v
    }
}

/// Pings from `ns` and returns the average RTT in ms, or None on failure.
fn ping(ns: &Netns, count: &str) -> Option<f64> {
    let out = Command::new("ip")
        .args([
            "netns", "exec", &ns.0, "busybox", "ping", "-c", count, "-i", "0.2", "-W", "1",
        ])
        .arg("10.251.7.2")
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    // "round-trip min/avg/max = 40.3/40.5/40.9 ms"
    let stats = text.lines().find(|l| l.contains("min/avg/max"))?;
    let nums = stats.split('=').nth(1)?.trim().split(' ').next()?;
    nums.split('/').nth(1)?.parse().ok()
}

#[test]
fn ping_through_emulator_with_delay_and_updown() {
    if !is_root() || !have("ip") || !have("busybox") {
        eprintln!("skipping: needs root, ip and busybox");
        return;
    }
    let a = Netns::new("a");
    let b = Netns::new("b");
    let mut emu = Emu::start(&a, &b, &["--rate", "100mbit", "--delay", "20ms"]);

    let rtt = ping(&a, "5").unwrap_or_else(|| panic!("ping failed while up"));
    eprintln!("average RTT through 2 × 20 ms: {rtt} ms");
    assert!(rtt >= 40.0, "average RTT {rtt} ms < 2 × 20 ms");

    let v = emu.control_ok(r#"{"up":false}"#);
    assert_eq!(v["params"]["a_to_b"]["up"], false);
    assert_eq!(ping(&a, "3"), None, "ping succeeded while down");

    emu.control_ok(r#"{"up":true}"#);
    let rtt = ping(&a, "3").unwrap_or_else(|| panic!("ping failed after up"));
    assert!(rtt >= 40.0, "average RTT {rtt} ms");

    let stats = emu.control_ok(r#"{"stats":true}"#);
    assert!(
        stats["stats"]["a_to_b"]["frames_forwarded"].as_u64() >= Some(8),
        "{stats}"
    );
    assert!(
        stats["stats"]["a_to_b"]["dropped_down"].as_u64() >= Some(1),
        "{stats}"
    );
}

/// Bulk transfer through a 50 Mbit/s, 5 ms link (bash `/dev/tcp` sender,
/// `busybox nc -l` receiver). Asserts
/// only what the shaper guarantees (all bytes arrive, never faster than the
/// rate); prints throughput and emulator CPU for information.
#[test]
fn bulk_transfer_respects_rate() {
    if !is_root() || !have("ip") || !have("busybox") {
        eprintln!("skipping: needs root, ip and busybox");
        return;
    }
    let a = Netns::new("a");
    let b = Netns::new("b");
    let emu = Emu::start(&a, &b, &["--rate", "50mbit", "--delay", "5ms"]);
    let bytes: u64 = 12_500_000;
    let sink = Command::new("ip")
        .args([
            "netns",
            "exec",
            &b.0,
            "sh",
            "-c",
            "busybox nc -l -p 5001 | wc -c",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("sink: {e}"));
    std::thread::sleep(Duration::from_millis(300));
    let cpu0 = emu.cpu_ticks();
    let t0 = std::time::Instant::now();
    let cmd = format!("head -c {bytes} /dev/zero > /dev/tcp/10.251.7.2/5001");
    let sent = Command::new("ip")
        .args(["netns", "exec", &a.0, "bash", "-c", &cmd])
        .status();
    let out = sink
        .wait_with_output()
        .unwrap_or_else(|e| panic!("sink: {e}"));
    let secs = t0.elapsed().as_secs_f64();
    let cpu1 = emu.cpu_ticks();
    assert!(sent.is_ok_and(|s| s.success()), "sender failed");
    let got: u64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    assert_eq!(got, bytes);
    let mbit = bytes as f64 * 8.0 / secs / 1e6;
    if let (Some(c0), Some(c1)) = (cpu0, cpu1) {
        eprintln!(
            "bulk: {mbit:.1} Mbit/s in {secs:.2} s; emulator CPU {:.1}% of one core",
            (c1 - c0) as f64 / 100.0 / secs * 100.0
        );
    }
    assert!(
        mbit <= 50.0 * 1.02,
        "faster than the link rate: {mbit} Mbit/s"
    );
}
