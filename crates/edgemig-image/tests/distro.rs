//! Builds the Debian 12 disk image (with nginx-light) through the library
//! and boots it under QEMU (TCG, 512 MiB, 1 vCPU): with SeaBIOS and with
//! OVMF the guest agent must send its `ready` event on the virtio-serial
//! port; the image without the agent must hold no agent and reach the
//! serial login prompt (getty, part of multi-user.target).
//!
//! The image cache lives in the cargo target directory
//! (`target/distro-cache`, also `edgemig image build`'s default), so only
//! the first run pays for mmdebstrap; parallel tests wait for one build.
//! QEMU boots an overlay in a temporary directory: the built image is never
//! written. Needs root (loop devices), the tools of scripts/setup.sh and
//! the guest agent package of scripts/build.sh.

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use edgemig_image::distro::{self, Agent, DistroImage, DistroSpec, HOSTNAME, disk};

/// Upper bound of each wait (a boot takes 30-60 s under TCG on an idle
/// machine; this only ends a hung test, it is not a timing assertion).
const BOOT_WAIT: Duration = Duration::from_secs(300);

/// Largest image file accepted.
const MAX_FILE_BYTES: u64 = 1 << 30;

const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `target/distro-cache`: shared by runs and test binaries.
fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map(|target| target.join("distro-cache"))
        .unwrap_or_else(|| repo().join("target/distro-cache"))
}

fn agent_deb() -> PathBuf {
    let deb = repo().join(format!(
        "target/debian/edgemig-guest_{}_amd64.deb",
        env!("CARGO_PKG_VERSION")
    ));
    assert!(
        deb.is_file(),
        "{} missing: run scripts/build.sh (it calls scripts/package-debs.sh)",
        deb.display()
    );
    deb
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(&format!("\n  caused by: {c}"));
        cause = c.source();
    }
    s
}

/// Builds (or takes from the cache) the image into `dir/image.qcow2`.
fn build(agent: Agent, dir: &Path) -> DistroImage {
    let spec = DistroSpec::debian12(
        vec!["nginx-light".parse().expect("package name")],
        agent,
        cache_dir(),
    );
    let out = dir.join("image.qcow2");
    let image = distro::build(&spec, &out, &mut |step| eprintln!("build: {step}"))
        .unwrap_or_else(|e| panic!("build failed: {}", error_chain(&e)));
    eprintln!(
        "image: {} bytes (virtual {}), {}, {:.1} s, kernel {}",
        image.file_bytes,
        image.virtual_bytes,
        if image.cache_hit {
            "cache hit"
        } else {
            "built"
        },
        image.seconds,
        image.kernel
    );
    assert!(
        image.file_bytes <= MAX_FILE_BYTES,
        "image is {} bytes",
        image.file_bytes
    );
    assert_eq!(image.virtual_bytes, distro::DEFAULT_SIZE_BYTES);
    assert_eq!(std::fs::metadata(&out).unwrap().len(), image.file_bytes);
    image
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The root file system of an image, read with debugfs (no mount).
struct RootFs {
    raw: PathBuf,
}

impl RootFs {
    fn of(image: &Path, dir: &Path) -> RootFs {
        let raw = dir.join("inspect.raw");
        run(Command::new("qemu-img")
            .args(["convert", "-O", "raw"])
            .arg(image)
            .arg(&raw));
        RootFs { raw }
    }

    fn device(&self) -> String {
        format!("{}?offset={}", self.raw.display(), disk::ROOT_START)
    }

    /// `debugfs -R REQUEST`: its output and whether it printed an error.
    fn debugfs(&self, request: &str) -> (String, String) {
        let out = Command::new("debugfs")
            .args(["-R", request])
            .arg(self.device())
            .output()
            .expect("debugfs (e2fsprogs)");
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn exists(&self, path: &str) -> bool {
        let (stdout, stderr) = self.debugfs(&format!("stat {path}"));
        if stderr.contains("File not found") {
            return false;
        }
        assert!(stdout.contains("Inode:"), "stat {path}: {stdout}{stderr}");
        true
    }

    fn cat(&self, path: &str) -> String {
        let (stdout, stderr) = self.debugfs(&format!("cat {path}"));
        assert!(!stderr.contains("File not found"), "{path}: {stderr}");
        stdout
    }
}

impl Drop for RootFs {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.raw);
    }
}

/// Kills QEMU (by pid) when dropped, also when the test panics.
struct Qemu {
    child: Child,
    serial: PathBuf,
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Qemu {
    fn serial(&self) -> String {
        std::fs::read_to_string(&self.serial).unwrap_or_default()
    }

    /// Fails with the serial log if QEMU exited or the wait is over.
    fn check(&mut self, started: Instant, what: &str) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            panic!(
                "QEMU exited ({status}) before {what}; serial log:\n{}",
                self.serial()
            );
        }
        assert!(
            started.elapsed() < BOOT_WAIT,
            "no {what} within {BOOT_WAIT:?}; serial log:\n{}",
            self.serial()
        );
    }
}

#[derive(Clone, Copy, Debug)]
enum Firmware {
    SeaBios,
    Ovmf,
}

/// Boots `image` through an overlay in `dir`, with the guest agent's
/// virtio-serial port on a Unix socket `dir/agent.sock` and no NIC.
fn boot(image: &Path, dir: &Path, firmware: Firmware) -> (Qemu, PathBuf) {
    let overlay = dir.join("overlay.qcow2");
    run(Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
        .arg(image)
        .arg(&overlay));
    let serial = dir.join("serial.log");
    let sock = dir.join("agent.sock");
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(["-accel", "tcg", "-m", "512", "-smp", "1"])
        .args(["-nodefaults", "-display", "none", "-nic", "none"])
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .arg("-drive")
        .arg(format!(
            "file={},if=none,id=disk0,format=qcow2",
            overlay.display()
        ))
        .args(["-device", "virtio-blk-pci,drive=disk0"])
        .arg("-chardev")
        .arg(format!(
            "socket,id=agent,path={},server=on,wait=off",
            sock.display()
        ))
        .args(["-device", "virtio-serial-pci"])
        .arg("-device")
        .arg(format!(
            "virtserialport,chardev=agent,name={}",
            edgemig_guest_proto::PORT_NAME
        ));
    if let Firmware::Ovmf = firmware {
        let vars = dir.join("OVMF_VARS.fd");
        std::fs::copy(OVMF_VARS, &vars).expect("copy OVMF_VARS_4M.fd (package ovmf)");
        cmd.arg("-drive")
            .arg(format!(
                "if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"
            ))
            .arg("-drive")
            .arg(format!(
                "if=pflash,format=raw,unit=1,file={}",
                vars.display()
            ));
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start qemu-system-x86_64 (scripts/setup.sh installs it)");
    (Qemu { child, serial }, sock)
}

/// Connects to the agent's socket and waits for the `ready` event line.
fn wait_ready(qemu: &mut Qemu, sock: &Path, started: Instant) -> serde_json::Value {
    let stream = loop {
        match UnixStream::connect(sock) {
            Ok(s) => break s,
            Err(_) => {
                qemu.check(started, "the agent socket");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(1)))
        .expect("read timeout");
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        match reader.read_line(&mut line) {
            Ok(0) => panic!("agent socket closed; serial log:\n{}", qemu.serial()),
            Ok(_) if line.ends_with('\n') => {
                let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap_or_default();
                if v["type"] == "event" && v["event"]["kind"] == "ready" {
                    return v;
                }
                line.clear();
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("reading the agent socket: {e}"),
        }
        qemu.check(started, "the agent's ready event");
    }
}

fn boots_to_agent_ready(firmware: Firmware) {
    let dir = tempfile::tempdir().expect("temp dir");
    let image = build(Agent::Deb(agent_deb()), dir.path());
    assert!(image.agent);
    let started = Instant::now();
    let (mut qemu, sock) = boot(&image.path, dir.path(), firmware);
    let ready = wait_ready(&mut qemu, &sock, started);
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{firmware:?}: QEMU start to agent ready: {secs:.1} s (guest uptime {} ms); {ready}",
        ready["event"]["boot_ms"]
    );
    assert_eq!(ready["event"]["kernel"], image.kernel, "{ready}");
    let log = qemu.serial();
    assert!(
        !log.contains("Kernel panic") && !log.contains("emergency mode"),
        "serial log:\n{log}"
    );
}

#[test]
fn debian12_boots_to_agent_ready_under_seabios() {
    boots_to_agent_ready(Firmware::SeaBios);
}

#[test]
fn debian12_boots_to_agent_ready_under_ovmf() {
    boots_to_agent_ready(Firmware::Ovmf);
}

#[test]
fn agent_image_holds_the_agent_and_leaves_nics_to_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let image = build(Agent::Deb(agent_deb()), dir.path());
    let root = RootFs::of(&image.path, dir.path());
    assert!(root.exists("/usr/bin/edgemig-guest"));
    assert!(root.exists(
        "\"/etc/systemd/system/dev-virtio\\x2dports-org.edgemig.agent.device.wants/edgemig-guest.service\""
    ));
    let networkd = root.cat("/usr/lib/systemd/network/05-edgemig.network");
    assert!(networkd.contains("Driver=virtio_net") && networkd.contains("Unmanaged=yes"));
    assert!(!root.exists("/etc/systemd/network/80-edgemig-dhcp.network"));
    assert_eq!(root.cat("/etc/hostname").trim(), HOSTNAME);
    let shadow = root.cat("/etc/shadow");
    let root_hash = shadow
        .lines()
        .find_map(|l| l.strip_prefix("root:"))
        .and_then(|r| r.split(':').next())
        .unwrap_or_default();
    assert!(
        root_hash.starts_with('!'),
        "root is not locked: {root_hash:?}"
    );
    let fstab = root.cat("/etc/fstab");
    assert!(
        fstab.contains(" / ext4 ") && fstab.starts_with('#'),
        "{fstab}"
    );
    for (unit, _) in distro::MASKED_UNITS {
        if root.exists(&format!("/usr/lib/systemd/system/{unit}")) {
            let (stdout, _) = root.debugfs(&format!("stat /etc/systemd/system/{unit}"));
            assert!(
                stdout.contains("Fast link dest: \"/dev/null\""),
                "{unit}: {stdout}"
            );
        }
    }
}

#[test]
fn debian12_without_agent_has_no_agent_and_boots_to_login() {
    let dir = tempfile::tempdir().expect("temp dir");
    let image = build(Agent::None, dir.path());
    assert!(!image.agent);
    {
        let root = RootFs::of(&image.path, dir.path());
        assert!(!root.exists("/usr/bin/edgemig-guest"));
        assert!(!root.exists("/usr/lib/systemd/system/edgemig-guest.service"));
        assert!(
            !root
                .cat("/var/lib/dpkg/status")
                .contains("Package: edgemig-guest\n")
        );
        assert_eq!(
            root.cat("/etc/systemd/network/80-edgemig-dhcp.network"),
            distro::DHCP_NETWORK
        );
        assert!(
            root.exists("/etc/systemd/system/multi-user.target.wants/systemd-networkd.service")
        );
    }
    let started = Instant::now();
    let (mut qemu, _sock) = boot(&image.path, dir.path(), Firmware::SeaBios);
    let prompt = format!("{HOSTNAME} login:");
    while !qemu.serial().contains(&prompt) {
        qemu.check(started, "the serial login prompt");
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "no agent: QEMU start to login prompt: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
