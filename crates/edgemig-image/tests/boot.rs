//! Builds an image with the real guest kernel and boots it under QEMU (TCG).
//! The "guest agent" is a copy of the static busybox: run as
//! `edgemig-guest agent` it fails at once, so this also shows that /init's
//! respawn loop keeps PID 1 alive.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use edgemig_image::{ImageSpec, MODULES_MARKER, READY_MARKER, build, kernel_cmdline};

/// Upper bound of the readiness waits (TCG boots take ~4 s; this is not a
/// timing assertion).
const BOOT_WAIT: Duration = Duration::from_secs(60);

fn kernel_dir() -> PathBuf {
    let dir = std::env::var_os("EDGEMIG_KERNEL_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/guest-kernel"));
    assert!(
        dir.join("vmlinuz").is_file() && dir.join("modules/order").is_file(),
        "guest kernel not found in {} (set EDGEMIG_KERNEL_DIR or run scripts/setup.sh)",
        dir.display()
    );
    dir
}

/// Kills QEMU (by pid) when dropped, also when the test panics.
struct Qemu(Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls the serial log until `pred` holds for its contents. Fails if QEMU
/// exits or `BOOT_WAIT` passes.
fn wait_for(qemu: &mut Qemu, log: &Path, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + BOOT_WAIT;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if pred(&text) {
            return text;
        }
        if let Some(status) = qemu.0.try_wait().unwrap() {
            panic!("QEMU exited ({status}) before {what}; serial log:\n{text}");
        }
        assert!(
            Instant::now() < deadline,
            "no {what} within {BOOT_WAIT:?}; serial log:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn boots_to_agent_under_qemu() {
    let kernel_dir = kernel_dir();
    let tmp = tempfile::tempdir().unwrap();
    let agent = tmp.path().join("edgemig-guest");
    std::fs::copy("/bin/busybox", &agent).unwrap();
    let spec = ImageSpec {
        kernel_dir: kernel_dir.clone(),
        guest_agent: agent,
        busybox: PathBuf::from("/bin/busybox"),
        out_dir: tmp.path().join("image"),
    };
    let built = build(&spec).unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "image: {}",
        serde_json::to_string(&built).expect("serialize BuiltImage")
    );
    let modules = std::fs::read_to_string(kernel_dir.join("modules/order"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count();

    let serial = tmp.path().join("serial.log");
    let started = Instant::now();
    let child = Command::new("qemu-system-x86_64")
        .args([
            "-accel",
            "tcg",
            "-m",
            "128",
            "-nodefaults",
            "-display",
            "none",
        ])
        .args(["-no-reboot", "-kernel"])
        .arg(&built.kernel)
        .arg("-initrd")
        .arg(&built.initramfs)
        // The command line the host agent uses (`quiet` included).
        .arg("-append")
        .arg(kernel_cmdline("10.99.0.2/24", Some("10.99.0.1")))
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        // A NIC with no backend at all: eth0 exists, nothing reaches the host.
        .args(["-device", "virtio-net-pci,id=nic0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start qemu-system-x86_64 (installed by scripts/setup.sh)");
    let mut qemu = Qemu(child);

    let text = wait_for(&mut qemu, &serial, "agent start", |t| {
        t.contains(READY_MARKER)
    });
    let boot = started.elapsed();
    eprintln!("boot to {READY_MARKER:?}: {:.2} s", boot.as_secs_f64());

    for line in text.lines().filter(|l| l.starts_with("edgemig-init:")) {
        eprintln!("guest: {line}");
    }

    let expected = format!("{MODULES_MARKER}{modules} of {modules}");
    assert!(
        text.contains(&expected),
        "expected {expected:?}; serial log:\n{text}\n\
         (if insmod failed with \"unknown symbol\", {} lacks dependencies such as \
         virtio_ring, virtio, virtio_pci: rerun scripts/setup.sh)",
        kernel_dir.join("modules/order").display()
    );
    assert!(
        text.contains("edgemig-init: eth0 10.99.0.2/24"),
        "eth0 not configured; serial log:\n{text}"
    );
    assert!(
        text.contains("edgemig-init: default via 10.99.0.1"),
        "default route not set; serial log:\n{text}"
    );
    assert!(
        text.contains("edgemig-init: mptcp enabled"),
        "serial log:\n{text}"
    );

    // The stand-in agent fails at once; /init must keep restarting it and
    // PID 1 must stay alive (panic=-1 + -no-reboot would end QEMU).
    let text = wait_for(&mut qemu, &serial, "two agent restarts", |t| {
        t.matches("edgemig-init: agent exited").count() >= 2
    });
    assert!(!text.contains("Kernel panic"), "serial log:\n{text}");
    assert!(qemu.0.try_wait().unwrap().is_none(), "QEMU exited");
}
