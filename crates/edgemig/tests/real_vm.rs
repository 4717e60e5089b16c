//! VMs of a real distribution: a Debian 12 disk image built from Debian
//! packages (`edgemig image build --distro debian12`), imported at one
//! site and pushed to the other, booted through GRUB (SeaBIOS, and OVMF
//! with its own variable store), migrated back and forth with its root disk
//! while a stock client (curl through `mptcpize`) downloads from a stock
//! server (nginx, given MPTCP by the guest agent's BPF hook); and a VM
//! whose image has no guest agent, which migrates behind the tunnel.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use edgemig_testkit::{TestTestbed, two_sites, wait_until};
use serde_json::Value;

fn cli_path() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_edgemig"))
}

/// Builds (or takes from the cache under the target directory) a Debian
/// image; returns its path in `dir` and the build's JSON.
fn debian_image(dir: &Path, name: &str, extra: &[&str]) -> (PathBuf, Value) {
    let out_path = dir.join(format!("{name}.qcow2"));
    let mut args = vec![
        "--json",
        "image",
        "build",
        "--distro",
        "debian12",
        "--packages",
        "nginx-light",
        "--out",
        out_path.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = Command::new(cli_path()).args(&args).output().unwrap();
    assert!(
        out.status.success(),
        "image build failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let built: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        built["file_bytes"].as_u64().unwrap() <= 1 << 30,
        "the image stays within 1 GiB: {built}"
    );
    (out_path, built)
}

/// A temporary directory QEMU's user may read.
fn shared_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    edgemig_testkit::open_to_qemu(dir.path());
    dir
}

fn guest_ok(tb: &TestTestbed, site: &str, vm: &str) {
    wait_until(
        &format!("the guest agent of {vm} at {site}"),
        Duration::from_secs(180),
        || {
            let out = tb.site_cli(site, &["--json", "vm", "guest", vm, "hello"]);
            out.status.success().then_some(())
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
}

fn migrate(tb: &TestTestbed, from: &str, vm: &str, to: &str) -> Value {
    let out = tb.site_cli(from, &["--json", "migrate", vm, "--to", to]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert!(
        out.status.success(),
        "{report} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(report["status"], "completed", "{report}");
    report
}

fn verify_file(tb: &TestTestbed, site: &str, vm: &str, path: &str, mib: &str, seed: &str) {
    let v = tb.site_json(
        site,
        &[
            "vm",
            "guest",
            vm,
            "disk-verify",
            "--device",
            path,
            "--mib",
            mib,
            "--seed",
            seed,
        ],
    );
    assert_eq!(v["ok"], true, "{path} damaged at {site}: {v}");
}

/// The address part of `10.10.0.2/24`.
fn ip_of(address: &Value) -> String {
    address
        .as_str()
        .and_then(|a| a.split('/').next())
        .unwrap_or_default()
        .to_string()
}

/// FNV-1a 64, as the guest agent's disk reports use.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A stock client's download, ended (by pid) when dropped.
struct Download {
    child: Option<Child>,
    out: PathBuf,
}

impl Download {
    fn start(tb: &TestTestbed, url: &str, out: PathBuf, rate: &str) -> Self {
        let child = Command::new("ip")
            .args(["netns", "exec", &tb.netns("alice")])
            .args([
                "mptcpize",
                "run",
                "curl",
                "--silent",
                "--show-error",
                "--fail",
            ])
            .args(["--limit-rate", rate, "--output"])
            .arg(&out)
            .arg(url)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run curl through mptcpize (packages curl, mptcpize)");
        Self {
            child: Some(child),
            out,
        }
    }

    /// Waits for the download; whether it succeeded, its stderr, and what
    /// it downloaded.
    fn finish(mut self) -> (bool, String, Vec<u8>) {
        let mut child = self.child.take().unwrap();
        let status = child.wait().unwrap();
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        let got = std::fs::read(&self.out).unwrap_or_default();
        (status.success(), err, got)
    }
}

impl Drop for Download {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(&self.out);
    }
}

#[test]
fn a_debian_vm_moves_back_and_forth_with_its_root_disk_and_a_stock_session() {
    let images = shared_dir();
    let (image, built) = debian_image(images.path(), "debian12", &[]);
    let tb = TestTestbed::new(cli_path());
    tb.up(Some(&two_sites("50mbit", "5ms", None, true)));

    // The image, cached at site-a and pre-staged at site-b.
    let imported = tb.site_json(
        "site-a",
        &[
            "image",
            "import",
            image.to_str().unwrap(),
            "--name",
            "debian12",
        ],
    );
    let digest = imported["digest"].as_str().unwrap().to_string();
    assert_eq!(
        digest,
        format!("sha256:{}", built["sha256"].as_str().unwrap()),
        "the cache names the image by the file's digest"
    );
    let pushed = tb.site_json("site-a", &["image", "push", "debian12", "--to", "site-b"]);
    assert_eq!(pushed["digest"], digest.as_str(), "{pushed}");
    assert!(pushed["wire_bytes"].as_u64().unwrap() > 0, "{pushed}");
    let at_b = tb.site_json("site-b", &["image", "list"]);
    assert!(
        at_b.as_array()
            .unwrap()
            .iter()
            .any(|i| i["digest"] == digest.as_str()),
        "site-b holds the pushed image: {at_b}"
    );
    let again = tb.site_json("site-a", &["image", "push", "debian12", "--to", "site-b"]);
    assert_eq!(again["already_present"], true, "{again}");

    tb.site_json(
        "site-a",
        &[
            "vm",
            "create",
            "web",
            "--image",
            "debian12",
            "--memory",
            "512M",
            "--disk",
            "64M",
            "--mptcp-apps",
            "nginx.service",
        ],
    );
    tb.site_json("site-a", &["vm", "start", "web"]);
    guest_ok(&tb, "site-a", "web");
    let hello = tb.site_json("site-a", &["vm", "guest", "web", "hello"]);
    assert_eq!(
        hello["systemd"], true,
        "the agent runs as a systemd service: {hello}"
    );
    // nginx started before the agent: restart it so its listener is MPTCP.
    let apps = tb.site_json(
        "site-a",
        &[
            "vm",
            "guest",
            "web",
            "mptcp-apps",
            "nginx.service",
            "--restart",
        ],
    );
    assert_eq!(apps["mechanism"], "bpf", "{apps}");
    assert_eq!(apps["units"][0]["state"], "active", "{apps}");

    // Files on the root disk, one of them what nginx serves.
    let data = tb.site_json(
        "site-a",
        &[
            "vm",
            "guest",
            "web",
            "disk-write",
            "--device",
            "/root/data.bin",
            "--mib",
            "16",
            "--seed",
            "7",
        ],
    );
    assert_eq!(data["ok"], true, "{data}");
    let served = tb.site_json(
        "site-a",
        &[
            "vm",
            "guest",
            "web",
            "disk-write",
            "--device",
            "/var/www/html/big.bin",
            "--mib",
            "12",
            "--seed",
            "8",
        ],
    );
    let served_sum = served["checksum"].as_u64().unwrap();
    tb.site_json(
        "site-a",
        &[
            "vm",
            "guest",
            "web",
            "disk-write",
            "--mib",
            "8",
            "--seed",
            "9",
        ],
    );

    let vm = tb.site_json("site-a", &["vm", "show", "web"]);
    let first = ip_of(&vm["nics"][0]["address"]);
    let downloads = shared_dir();
    let download = Download::start(
        &tb,
        &format!("http://{first}/big.bin"),
        downloads.path().join("big.bin"),
        "60k",
    );
    std::thread::sleep(Duration::from_secs(3));

    // a -> b: only the root disk's overlay travels.
    let there = migrate(&tb, "site-a", "web", "site-b");
    let root = &there["disks"][0];
    assert_eq!(root["role"], "root", "{there}");
    assert_eq!(root["sync"], "top", "the image was at site-b: {there}");
    assert!(
        root["bytes"].as_u64().unwrap() < 512 << 20,
        "only the overlay travelled: {there}"
    );
    assert_eq!(there["network"]["handoff"], "done", "{there}");
    assert!(there["network"]["moved"].as_u64().unwrap() >= 1, "{there}");
    assert_eq!(there["network"]["on_old"], 0, "{there}");
    verify_file(&tb, "site-b", "web", "/root/data.bin", "16", "7");
    verify_file(&tb, "site-b", "web", "/var/www/html/big.bin", "12", "8");

    // b -> a.
    let back = migrate(&tb, "site-b", "web", "site-a");
    assert_eq!(back["disks"][0]["sync"], "top", "{back}");
    assert_eq!(back["network"]["handoff"], "done", "{back}");
    assert!(
        back["network"]["moved"].as_u64().unwrap() >= 1,
        "the stock session moved to the newest address: {back}"
    );
    assert_eq!(back["network"]["on_old"], 0, "{back}");
    verify_file(&tb, "site-a", "web", "/root/data.bin", "16", "7");
    let data_disk = tb.site_json(
        "site-a",
        &[
            "vm",
            "guest",
            "web",
            "disk-verify",
            "--mib",
            "8",
            "--seed",
            "9",
        ],
    );
    assert_eq!(data_disk["ok"], true, "{data_disk}");

    let (ok, err, got) = download.finish();
    assert!(ok, "the stock client failed: {err}");
    assert_eq!(got.len(), 12 << 20);
    assert_eq!(fnv1a64(&got), served_sum, "the download is the file");
}

#[test]
fn a_uefi_vm_migrates_with_its_variable_store() {
    let images = shared_dir();
    let (image, _) = debian_image(images.path(), "debian12", &[]);
    let tb = TestTestbed::new(cli_path());
    tb.up(Some(&two_sites("100mbit", "2ms", None, false)));
    tb.site_json(
        "site-a",
        &[
            "image",
            "import",
            image.to_str().unwrap(),
            "--name",
            "debian12-uefi",
            "--firmware",
            "uefi",
        ],
    );
    tb.site_json(
        "site-a",
        &[
            "vm",
            "create",
            "fw",
            "--image",
            "debian12-uefi",
            "--memory",
            "512M",
        ],
    );
    let vm = tb.site_json("site-a", &["vm", "start", "fw"]);
    assert_eq!(vm["firmware"], "uefi", "{vm}");
    guest_ok(&tb, "site-a", "fw");
    let template = std::fs::read("/usr/share/OVMF/OVMF_VARS_4M.fd").unwrap();
    let vars_a = std::fs::read(tb.site_state_dir("site-a").join("vms/fw/efivars.fd")).unwrap();
    assert_ne!(vars_a, template, "OVMF wrote its variables at boot");

    let report = migrate(&tb, "site-a", "fw", "site-b");
    assert!(report["disks"][0]["sync"] == "full", "{report}");
    let vars_b = std::fs::read(tb.site_state_dir("site-b").join("vms/fw/efivars.fd")).unwrap();
    assert_eq!(vars_b, vars_a, "the variable store moved with the VM");
    // A cold start at site-b boots from the moved store and disk.
    tb.site_json("site-b", &["vm", "stop", "fw"]);
    tb.site_json("site-b", &["vm", "start", "fw"]);
    guest_ok(&tb, "site-b", "fw");
}

#[test]
fn a_vm_without_the_agent_migrates_behind_the_tunnel() {
    let images = shared_dir();
    let (image, _) = debian_image(images.path(), "plain", &["--no-agent"]);
    let tb = TestTestbed::new(cli_path());
    tb.up(Some(&two_sites("100mbit", "2ms", None, true)));
    tb.site_json(
        "site-a",
        &[
            "image",
            "import",
            image.to_str().unwrap(),
            "--name",
            "plain",
        ],
    );
    tb.site_json(
        "site-a",
        &[
            "vm", "create", "plain", "--image", "plain", "--memory", "512M",
        ],
    );
    let vm = tb.site_json("site-a", &["vm", "start", "plain"]);
    let ip = ip_of(&vm["nics"][0]["address"]);
    let fetch = |what: &str| {
        let out = tb.exec(
            "alice",
            &[
                "curl",
                "--silent",
                "--fail",
                "--max-time",
                "5",
                &format!("http://{ip}/"),
            ],
        );
        assert!(!what.is_empty());
        out.status.success().then_some(())
    };
    // The image's networkd asks the site's DHCP server for the address.
    wait_until(
        "nginx in the VM from alice",
        Duration::from_secs(240),
        || fetch("before"),
    )
    .unwrap_or_else(|e| panic!("{e}"));

    let report = migrate(&tb, "site-a", "plain", "site-b");
    let handoff = report["network"]["handoff"].as_str().unwrap_or_default();
    assert!(
        handoff.starts_with("skipped"),
        "no agent, no handoff, and the report says why: {report}"
    );
    assert_eq!(
        report["disks"][0]["sync"], "full",
        "site-b lacked the image: {report}"
    );
    wait_until(
        "nginx through the tunnel after the move",
        Duration::from_secs(30),
        || fetch("after"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let listed = tb.site_json("site-b", &["vm", "list"]);
    assert_eq!(listed[0]["state"], "running", "{listed}");
    let left = tb.site_json("site-a", &["vm", "list"]);
    assert!(
        left.as_array().unwrap().is_empty(),
        "nothing left at site-a: {left}"
    );
}
