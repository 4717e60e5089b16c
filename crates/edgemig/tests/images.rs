//! The image cache through the CLI, with real agents: bad input refused
//! with a clear message and nothing half-made (a file that is no disk
//! image, a backing file, an encrypted image, unknown firmware, an image a
//! running VM writes, removing an image a VM boots from, a push to an
//! unknown site or to a site without room), and a push cut halfway that
//! resumes and arrives verified.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use edgemig::exit;
use edgemig_testkit::{SmallTmpfs, TestTestbed, two_sites, wait_until};

fn cli_path() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_edgemig"))
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A file of `mib` MiB of incompressible bytes that reads as a disk (an
/// MBR signature in its first sector).
fn random_disk(path: &Path, mib: usize) {
    let mut f = std::fs::File::create(path).unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut block = vec![0u8; 1 << 20];
    for i in 0..mib {
        for chunk in block.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        if i == 0 {
            block[510] = 0x55;
            block[511] = 0xaa;
        }
        f.write_all(&block).unwrap();
    }
}

fn image_names(tb: &TestTestbed, site: &str) -> Vec<String> {
    tb.site_json(site, &["image", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn bad_images_are_refused_with_a_clear_message_and_nothing_half_made() {
    let tb = TestTestbed::new(cli_path());
    tb.up(Some(&two_sites("100mbit", "1ms", None, false)));
    let dir = tempfile::tempdir().unwrap();
    edgemig_testkit::open_to_qemu(dir.path());
    let file = |name: &str| dir.path().join(name).display().to_string();

    // Not a disk image.
    std::fs::write(file("notes.txt"), "a README, not a disk\n".repeat(100)).unwrap();
    let out = tb.site_cli("site-a", &["image", "import", &file("notes.txt")]);
    assert_eq!(code(&out), i32::from(exit::INVALID), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not a disk image"),
        "{}",
        stderr(&out)
    );

    // A backing file.
    random_disk(&dir.path().join("base.raw"), 1);
    let made = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
        .args([file("base.raw"), file("overlay.qcow2")])
        .status()
        .unwrap();
    assert!(made.success());
    let out = tb.site_cli("site-a", &["image", "import", &file("overlay.qcow2")]);
    assert_eq!(code(&out), i32::from(exit::INVALID), "{}", stderr(&out));
    assert!(stderr(&out).contains("backing file"), "{}", stderr(&out));

    // An encrypted image.
    std::fs::write(file("key"), "s3cret").unwrap();
    let made = Command::new("qemu-img")
        .args(["create", "-q", "--object"])
        .arg(format!("secret,id=k,file={}", file("key")))
        .args([
            "-f",
            "qcow2",
            "-o",
            "encrypt.format=luks,encrypt.key-secret=k",
        ])
        .args([file("secret.qcow2"), "1M".into()])
        .status()
        .unwrap();
    assert!(made.success());
    let out = tb.site_cli("site-a", &["image", "import", &file("secret.qcow2")]);
    assert_eq!(code(&out), i32::from(exit::INVALID), "{}", stderr(&out));
    assert!(stderr(&out).contains("encrypted"), "{}", stderr(&out));

    // Unknown firmware.
    let out = tb.site_cli(
        "site-a",
        &["image", "import", &file("base.raw"), "--firmware", "efi"],
    );
    assert_eq!(code(&out), i32::from(exit::USAGE), "{}", stderr(&out));
    assert!(stderr(&out).contains("bios or uefi"), "{}", stderr(&out));
    assert!(
        image_names(&tb, "site-a").is_empty(),
        "nothing was imported"
    );

    // A file a running VM writes: the data disk of a running VM.
    tb.site_json(
        "site-a",
        &["vm", "create", "busy", "--memory", "128M", "--disk", "16M"],
    );
    tb.site_json("site-a", &["vm", "start", "busy"]);
    let disk = tb.site_state_dir("site-a").join("vms/busy/data.qcow2");
    let out = tb.site_cli("site-a", &["image", "import", disk.to_str().unwrap()]);
    assert_eq!(code(&out), i32::from(exit::CONFLICT), "{}", stderr(&out));
    assert!(stderr(&out).contains("in use"), "{}", stderr(&out));

    // An image a VM boots from cannot be removed.
    tb.site_json(
        "site-a",
        &["image", "import", &file("base.raw"), "--name", "base"],
    );
    tb.site_json("site-a", &["vm", "create", "user", "--image", "base"]);
    let out = tb.site_cli("site-a", &["image", "remove", "base"]);
    assert_eq!(code(&out), i32::from(exit::CONFLICT), "{}", stderr(&out));
    assert!(stderr(&out).contains("user"), "{}", stderr(&out));
    tb.site_json("site-a", &["vm", "delete", "user"]);
    tb.site_json("site-a", &["image", "remove", "base"]);
    assert!(image_names(&tb, "site-a").is_empty());

    // A push to a site that is no peer.
    tb.site_json(
        "site-a",
        &["image", "import", &file("base.raw"), "--name", "base"],
    );
    let out = tb.site_cli("site-a", &["image", "push", "base", "--to", "site-z"]);
    assert_eq!(code(&out), i32::from(exit::NOT_FOUND), "{}", stderr(&out));
    assert!(stderr(&out).contains("Unknown site"), "{}", stderr(&out));

    // A push to a site without room: nothing is left there.
    random_disk(&dir.path().join("big.raw"), 100);
    tb.site_json(
        "site-a",
        &["image", "import", &file("big.raw"), "--name", "big"],
    );
    let images_b = tb.site_state_dir("site-b").join("images");
    std::fs::create_dir_all(&images_b).unwrap();
    let tmpfs = SmallTmpfs::mount(&images_b, 64);
    let out = tb.site_cli("site-a", &["image", "push", "big", "--to", "site-b"]);
    assert_eq!(code(&out), i32::from(exit::CONFLICT), "{}", stderr(&out));
    assert!(stderr(&out).contains("no room"), "{}", stderr(&out));
    let left: Vec<_> = std::fs::read_dir(&images_b)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "nothing half-pushed: {left:?}");
    drop(tmpfs);
}

#[test]
fn a_push_cut_halfway_resumes_and_arrives_verified() {
    let tb = TestTestbed::new(cli_path());
    tb.up(Some(&two_sites("20mbit", "5ms", None, false)));
    let dir = tempfile::tempdir().unwrap();
    edgemig_testkit::open_to_qemu(dir.path());
    let path = dir.path().join("random.raw");
    random_disk(&path, 48);
    let imported = tb.site_json(
        "site-a",
        &[
            "image",
            "import",
            path.to_str().unwrap(),
            "--name",
            "random",
        ],
    );
    let digest = imported["digest"].as_str().unwrap().to_string();
    let hex = digest.strip_prefix("sha256:").unwrap().to_string();
    let push = Command::new(cli_path())
        .env("EDGEMIG_TESTBED_DIR", tb.state_dir().parent().unwrap())
        .args(["--testbed", &tb.name, "--site", "site-a", "--json"])
        .args(["image", "push", "random", "--to", "site-b"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let partial = tb
        .site_state_dir("site-b")
        .join("images")
        .join(format!(".partial-{hex}"));
    wait_until(
        "part of the image at site-b",
        Duration::from_secs(120),
        || (std::fs::metadata(&partial).map_or(0, |m| m.len()) > 8 << 20).then_some(()),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // Both paths cut for longer than the push's stall limit.
    for p in ["path1", "path2"] {
        assert!(tb.testbed(&["link", p, "set", "down"]).status.success());
    }
    std::thread::sleep(Duration::from_secs(30));
    for p in ["path1", "path2"] {
        assert!(tb.testbed(&["link", p, "set", "up"]).status.success());
    }
    let out = push.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["attempts"].as_u64().unwrap() >= 2, "{report}");
    assert!(
        report["resumed_from"].as_u64().unwrap() > 0,
        "the retry resumed where the cut left it: {report}"
    );
    let at_b = tb.site_json("site-b", &["image", "list"]);
    assert_eq!(at_b[0]["digest"], digest.as_str(), "{at_b}");
    assert!(!partial.exists(), "the partial file became the image");
    let cached = std::fs::read(
        tb.site_state_dir("site-b")
            .join("images")
            .join(format!("{hex}.raw")),
    )
    .unwrap();
    assert_eq!(cached, std::fs::read(&path).unwrap(), "the same bytes");
}
