//! The host side: packs this very test binary (and the shared libraries it
//! needs) as `/init` of an initramfs, boots it under QEMU (TCG, no network
//! device) with a kernel that has the hook, and reads the verdict from
//! the serial console.
//!
//! `EDGEMIG_VM_CONSOLE=1` prints the whole console even when every check
//! passes. The kernel: `$EDGEMIG_HOOK_KERNEL`, else
//! `<workspace>/target/guest-kernel-6.12/vmlinuz` (the bookworm-backports
//! cloud kernel, `linux-image-6.12.*-cloud-amd64`, which has BTF and the
//! hook). The machine running the tests may itself refuse to load
//! trampoline programs (fentry/fexit/fmod_ret), so the hook is exercised
//! in a VM where the test owns the kernel.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use edgemig_image::cpio::NewcWriter;

/// Longest a run may take before QEMU is killed (a boot takes seconds; this
/// only keeps a wedged guest from hanging the test suite).
const BOUND: Duration = Duration::from_secs(600);

fn kernel() -> Result<PathBuf, String> {
    if let Ok(k) = std::env::var("EDGEMIG_HOOK_KERNEL") {
        return Ok(PathBuf::from(k));
    }
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let k = here.join("../../target/guest-kernel-6.12/vmlinuz");
    if k.exists() {
        Ok(k)
    } else {
        Err(format!(
            "no kernel with the update_socket_protocol hook: set EDGEMIG_HOOK_KERNEL or put the \
             bookworm-backports cloud kernel's vmlinuz at {} (scripts/setup.sh does)",
            k.display()
        ))
    }
}

/// The shared libraries `exe` loads, from `ldd` (absolute paths).
fn libraries(exe: &Path) -> Result<Vec<PathBuf>, String> {
    let out = Command::new("ldd")
        .arg(exe)
        .output()
        .map_err(|e| format!("ldd: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .filter_map(|l| {
            let path = l.split("=>").last()?.split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}

fn initramfs(exe: &Path, out: &Path) -> Result<(), String> {
    let err = |e: std::io::Error| e.to_string();
    let file = std::fs::File::create(out).map_err(err)?;
    let mut w = NewcWriter::new(std::io::BufWriter::new(file));
    for d in [
        "dev",
        "proc",
        "sys",
        "tmp",
        "lib",
        "lib64",
        "lib/x86_64-linux-gnu",
    ] {
        w.dir(d, 0o755).map_err(err)?;
    }
    w.char_dev("dev/console", 0o600, 5, 1).map_err(err)?;
    let init = std::fs::read(exe).map_err(err)?;
    w.file("init", 0o755, &init).map_err(err)?;
    for lib in libraries(exe)? {
        // The loader resolves symlinks itself; store the real file under
        // the name the binary asks for.
        let data = std::fs::read(&lib).map_err(err)?;
        let name = lib.to_string_lossy().trim_start_matches('/').to_string();
        w.file(&name, 0o755, &data).map_err(err)?;
    }
    w.finish().map_err(err)?;
    Ok(())
}

/// Boots the VM, returns its console output.
fn boot(kernel: &Path, initrd: &Path, console: &Path) -> Result<String, String> {
    let mut child = Command::new("qemu-system-x86_64")
        .args([
            "-accel",
            "tcg",
            "-m",
            "512",
            "-smp",
            "1",
            "-nodefaults",
            "-no-reboot",
        ])
        .args(["-display", "none", "-nic", "none"])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", "console=ttyS0 panic=-1 quiet"])
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("qemu-system-x86_64: {e}"))?;
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if started.elapsed() > BOUND => {
                // Ours, by pid.
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("the VM did not power off within {BOUND:?}"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(200)),
            Err(e) => return Err(format!("waiting for QEMU: {e}")),
        }
    };
    let text = std::fs::read_to_string(console).unwrap_or_default();
    eprintln!(
        "VM ran for {:.1} s, QEMU {status}",
        started.elapsed().as_secs_f64()
    );
    Ok(text)
}

pub fn run() -> ExitCode {
    match run_inner() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("in_vm: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_inner() -> Result<(), String> {
    let kernel = kernel()?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let initrd = dir.path().join("initramfs.cpio");
    initramfs(&exe, &initrd)?;
    let console = dir.path().join("console.log");
    let text = boot(&kernel, &initrd, &console)?;
    if std::env::var_os("EDGEMIG_VM_CONSOLE").is_some() {
        eprintln!("console:\n{text}");
    }
    let checks: Vec<&str> = text.lines().filter(|l| l.starts_with("CHECK ")).collect();
    for c in &checks {
        eprintln!("{c}");
    }
    let failed: Vec<&&str> = checks.iter().filter(|c| !c.ends_with(" ok")).collect();
    let verdict = text.lines().find(|l| l.starts_with("RESULT "));
    if verdict != Some("RESULT ok") || !failed.is_empty() || checks.len() < 15 {
        return Err(format!(
            "{} checks, {} failed, verdict {verdict:?}; console:\n{text}",
            checks.len(),
            failed.len()
        ));
    }
    eprintln!("in_vm: {} checks passed", checks.len());
    Ok(())
}
