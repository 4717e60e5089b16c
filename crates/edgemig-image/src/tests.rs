use super::*;
use std::path::Path;

/// A fake kernel directory (two tiny "modules") and a spec using the real,
/// static /bin/busybox as both busybox and guest agent.
fn fixture(root: &Path) -> ImageSpec {
    let kernel_dir = root.join("kernel");
    fs::create_dir_all(kernel_dir.join("modules")).unwrap();
    fs::write(kernel_dir.join("vmlinuz"), b"not really a kernel").unwrap();
    fs::write(kernel_dir.join("modules/a.ko"), b"module a").unwrap();
    fs::write(kernel_dir.join("modules/b.ko"), b"module b").unwrap();
    fs::write(kernel_dir.join("modules/order"), "b.ko\na.ko\n\n").unwrap();
    ImageSpec {
        kernel_dir,
        guest_agent: PathBuf::from("/bin/busybox"),
        busybox: PathBuf::from("/bin/busybox"),
        out_dir: root.join("out"),
    }
}

#[test]
fn builds_image_with_expected_content() {
    let dir = tempfile::tempdir().unwrap();
    let spec = fixture(dir.path());
    let built = build(&spec).unwrap();
    assert_eq!(built.kernel, spec.out_dir.join("vmlinuz"));
    assert_eq!(built.initramfs, spec.out_dir.join("initramfs.cpio"));
    assert_eq!(fs::read(&built.kernel).unwrap(), b"not really a kernel");
    let archive = fs::read(&built.initramfs).unwrap();
    assert_eq!(archive.len() as u64, built.initramfs_bytes);
    assert!(built.initramfs_bytes <= MAX_INITRAMFS_BYTES);

    // Only the two outputs, no temporary files left behind.
    let mut names: Vec<_> = fs::read_dir(&spec.out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["initramfs.cpio", "vmlinuz"]);

    let entries = cpio::read_newc(&archive).unwrap();
    let get = |name: &str| {
        entries
            .iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("{name} missing from initramfs"))
    };
    // Every entry's parent directory comes before it.
    for (i, e) in entries.iter().enumerate() {
        if let Some((parent, _)) = e.name.rsplit_once('/') {
            let p = entries.iter().position(|d| d.name == parent).unwrap();
            assert!(p < i && entries[p].mode & cpio::S_IFMT == cpio::S_IFDIR);
        }
    }
    for d in ["dev", "proc", "sys", "tmp", "etc", "bin", "lib/modules"] {
        assert_eq!(get(d).mode & cpio::S_IFMT, cpio::S_IFDIR, "{d}");
    }
    let init = get("init");
    assert_eq!(init.mode, cpio::S_IFREG | 0o755);
    assert_eq!(init.data, INIT_SCRIPT.as_bytes());
    let busybox = fs::read("/bin/busybox").unwrap();
    assert_eq!(get("bin/busybox").data, busybox);
    assert_eq!(get("bin/edgemig-guest").data, busybox);
    assert_eq!(get("bin/edgemig-guest").mode, cpio::S_IFREG | 0o755);
    for applet in ["sh", "mount", "mkdir", "insmod", "ip", "sleep", "cat", "ln"] {
        let e = get(&format!("bin/{applet}"));
        assert_eq!(e.mode & cpio::S_IFMT, cpio::S_IFLNK);
        assert_eq!(e.data, b"busybox");
    }
    let console = get("dev/console");
    assert_eq!(console.mode, cpio::S_IFCHR | 0o600);
    assert_eq!((console.rdev_major, console.rdev_minor), (5, 1));
    assert_eq!(get("lib/modules/a.ko").data, b"module a");
    assert_eq!(get("lib/modules/b.ko").data, b"module b");
    assert_eq!(get("lib/modules/order").data, b"b.ko\na.ko\n");

    // Same inputs, same bytes.
    assert_eq!(build_initramfs(&spec).unwrap(), archive);
    // Building again replaces the outputs.
    build(&spec).unwrap();
}

#[test]
fn built_image_json_field_names() {
    let built = BuiltImage {
        kernel: "/o/vmlinuz".into(),
        initramfs: "/o/initramfs.cpio".into(),
        initramfs_bytes: 42,
    };
    let v = serde_json::to_value(&built).unwrap();
    assert_eq!(
        v,
        serde_json::json!({
            "kernel": "/o/vmlinuz",
            "initramfs": "/o/initramfs.cpio",
            "initramfs_bytes": 42
        })
    );
}

fn err_of(spec: &ImageSpec) -> ImageError {
    let e = build(spec).unwrap_err();
    let msg = e.to_string();
    assert!(msg.starts_with(char::is_uppercase), "{msg}");
    assert!(!spec.out_dir.exists(), "nothing is written on error: {msg}");
    e
}

#[test]
fn missing_kernel_dir() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = fixture(dir.path());
    spec.kernel_dir = dir.path().join("nope");
    let e = err_of(&spec);
    assert!(matches!(e, ImageError::KernelDirMissing { .. }), "{e:?}");
    assert!(e.to_string().contains("run scripts/setup.sh"));
    assert!(std::error::Error::source(&e).is_some());
}

#[test]
fn missing_vmlinuz() {
    let dir = tempfile::tempdir().unwrap();
    let spec = fixture(dir.path());
    fs::remove_file(spec.kernel_dir.join("vmlinuz")).unwrap();
    let e = err_of(&spec);
    assert!(matches!(e, ImageError::KernelMissing { .. }), "{e:?}");
    assert!(e.to_string().contains("run scripts/setup.sh"));
}

#[test]
fn missing_modules_order() {
    let dir = tempfile::tempdir().unwrap();
    let spec = fixture(dir.path());
    fs::remove_file(spec.kernel_dir.join("modules/order")).unwrap();
    let e = err_of(&spec);
    assert!(matches!(e, ImageError::ModulesOrderMissing { .. }), "{e:?}");
    assert!(e.to_string().contains("run scripts/setup.sh"));
}

#[test]
fn missing_or_bad_module() {
    let dir = tempfile::tempdir().unwrap();
    let spec = fixture(dir.path());
    fs::remove_file(spec.kernel_dir.join("modules/a.ko")).unwrap();
    let e = err_of(&spec);
    assert!(matches!(e, ImageError::ModuleMissing { .. }), "{e:?}");
    assert!(e.to_string().contains("a.ko"));

    fs::write(spec.kernel_dir.join("modules/order"), "../evil.ko\n").unwrap();
    let e = err_of(&spec);
    assert!(matches!(e, ImageError::BadModuleEntry { .. }), "{e:?}");
}

#[test]
fn module_dependencies_must_come_first() {
    let dir = tempfile::tempdir().unwrap();
    let spec = fixture(dir.path());
    let modules = spec.kernel_dir.join("modules");
    // b.ko (loaded first) depends on a.ko's module and on virtio_ring.
    fs::write(
        modules.join("b.ko"),
        b"\x7fELF...\0license=GPL\0depends=a,virtio-ring\0vermagic=6.1\0",
    )
    .unwrap();
    fs::write(
        modules.join("virtio_ring.ko"),
        b"\0depends=\0name=virtio_ring\0",
    )
    .unwrap();
    let e = err_of(&spec);
    match &e {
        ImageError::ModuleDependencyMissing {
            module, dependency, ..
        } => assert_eq!((module.as_str(), dependency.as_str()), ("b.ko", "a")),
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("run scripts/setup.sh"), "{e}");

    fs::write(modules.join("order"), "a.ko\nb.ko\n").unwrap();
    let e = err_of(&spec);
    assert!(
        matches!(&e, ImageError::ModuleDependencyMissing { dependency, .. } if dependency == "virtio_ring"),
        "{e:?}"
    );

    fs::write(modules.join("order"), "virtio_ring.ko\na.ko\nb.ko\n").unwrap();
    build(&spec).unwrap();
}

#[test]
fn module_names() {
    assert_eq!(module_name("virtio-rng.ko"), "virtio_rng");
    assert_eq!(module_name("virtio_net.ko.xz"), "virtio_net");
    assert_eq!(module_depends(b"x\0depends=\0y"), Vec::<String>::new());
    assert_eq!(module_depends(b"no modinfo"), Vec::<String>::new());
}

#[test]
fn missing_guest_agent() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = fixture(dir.path());
    spec.guest_agent = dir.path().join("edgemig-guest");
    let e = err_of(&spec);
    assert!(matches!(e, ImageError::GuestAgentMissing { .. }), "{e:?}");
    assert!(e.to_string().contains(GUEST_AGENT_BUILD_HINT), "{e}");
}

#[test]
fn dynamic_guest_agent() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = fixture(dir.path());
    spec.guest_agent = PathBuf::from("/bin/ls");
    let e = err_of(&spec);
    assert!(matches!(e, ImageError::GuestAgentNotStatic { .. }), "{e:?}");
    assert!(e.to_string().contains("dynamically linked"), "{e}");
    assert!(e.to_string().contains("+crt-static"), "{e}");
}

#[test]
fn non_elf_guest_agent() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = fixture(dir.path());
    spec.guest_agent = dir.path().join("script");
    fs::write(&spec.guest_agent, "#!/bin/sh\necho hi\n").unwrap();
    let e = err_of(&spec);
    assert!(matches!(e, ImageError::GuestAgentNotElf { .. }), "{e:?}");
}

#[test]
fn missing_or_dynamic_busybox() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = fixture(dir.path());
    spec.busybox = dir.path().join("busybox");
    let e = err_of(&spec);
    assert!(matches!(e, ImageError::BusyboxMissing { .. }), "{e:?}");
    assert!(e.to_string().contains("busybox-static"));

    spec.busybox = PathBuf::from("/bin/ls");
    let e = err_of(&spec);
    assert!(matches!(e, ImageError::BusyboxNotStatic { .. }), "{e:?}");
}

#[test]
fn too_large() {
    let dir = tempfile::tempdir().unwrap();
    let spec = fixture(dir.path());
    let big = vec![0u8; MAX_INITRAMFS_BYTES as usize];
    fs::write(spec.kernel_dir.join("modules/a.ko"), big).unwrap();
    let e = err_of(&spec);
    assert!(matches!(e, ImageError::TooLarge { .. }), "{e:?}");
}

#[test]
fn cmdline() {
    assert_eq!(
        kernel_cmdline("10.10.0.5/24", Some("10.10.0.1")),
        "console=ttyS0 panic=-1 quiet edgemig.ip0=10.10.0.5/24 edgemig.gw=10.10.0.1"
    );
    assert_eq!(
        kernel_cmdline("10.10.0.5/24", None),
        "console=ttyS0 panic=-1 quiet edgemig.ip0=10.10.0.5/24"
    );
}

#[test]
fn default_paths_layout() {
    let spec = ImageSpec::default_paths(Path::new("/repo"));
    assert_eq!(
        spec.guest_agent,
        Path::new("/repo/target/x86_64-unknown-linux-gnu/release/edgemig-guest")
    );
    assert_eq!(spec.busybox, Path::new("/bin/busybox"));
    assert_eq!(spec.out_dir, Path::new("/repo/target/guest-image"));
}

#[test]
fn init_script_contract() {
    assert!(INIT_SCRIPT.starts_with("#!/bin/sh\n"));
    assert!(INIT_SCRIPT.contains("log \"starting agent\""));
    assert_eq!(READY_MARKER, "edgemig-init: starting agent");
    assert!(INIT_SCRIPT.contains("/bin/edgemig-guest agent"));
    assert!(INIT_SCRIPT.contains("/proc/sys/net/mptcp/enabled"));
    assert!(INIT_SCRIPT.contains("edgemig.ip0=*"));
    assert!(INIT_SCRIPT.contains("edgemig.gw=*"));
    // Syntax check with the shell that runs it.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("init.sh");
    fs::write(&path, INIT_SCRIPT).unwrap();
    let out = std::process::Command::new("/bin/busybox")
        .args(["sh", "-n"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}
