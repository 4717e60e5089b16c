//! The checks, run as PID 1 of a throwaway VM whose kernel has the hook:
//! mounts what they need, prints one `CHECK <name> ok|FAIL <detail>` line
//! per check and a final `RESULT ok|FAIL`, then powers the VM off.
//!
//! Inside its own VM the test may attach `Scope::All` (it changes only
//! that VM); on the shared host it never does.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::path::Path;

use edgemig_mptcpify::{IPPROTO_MPTCP, Mptcpify, Program, Scope, Support, cgroup};

use super::probe;

const TCP: i32 = libc::IPPROTO_TCP;
const MPTCP: i32 = IPPROTO_MPTCP;

struct Report {
    failed: usize,
}

impl Report {
    fn check(&mut self, name: &str, r: Result<(), String>) {
        match r {
            Ok(()) => println!("CHECK {name} ok"),
            Err(e) => {
                self.failed += 1;
                println!("CHECK {name} FAIL {}", e.replace('\n', " | "));
            }
        }
    }
}

fn expect(what: &str, got: Result<i32, String>, want: i32) -> Result<(), String> {
    match got {
        Ok(v) if v == want => Ok(()),
        Ok(v) => Err(format!("{what}: protocol {v}, expected {want}")),
        Err(e) => Err(format!("{what}: {e}")),
    }
}

fn mount(src: &str, target: &str, fstype: &str) {
    let _ = std::fs::create_dir_all(target);
    let (s, t, f) = (
        CString::new(src).unwrap(),
        CString::new(target).unwrap(),
        CString::new(fstype).unwrap(),
    );
    // SAFETY: valid C strings; no data argument.
    let rc = unsafe { libc::mount(s.as_ptr(), t.as_ptr(), f.as_ptr(), 0, std::ptr::null()) };
    if rc != 0 {
        println!(
            "mount {fstype} on {target}: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Sets `lo` up (SIOCSIFFLAGS).
fn loopback_up() {
    // SAFETY: an all-zero ifreq is valid; the ioctl gets a live ifreq and a
    // socket this function owns.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (d, s) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
            *d = *s as libc::c_char;
        }
        ifr.ifr_ifru.ifru_flags = (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        libc::ioctl(fd, libc::SIOCSIFFLAGS, &ifr);
        libc::close(fd);
    }
}

/// Console on stdout/stderr (the kernel gives PID 1 none without
/// /dev/console in the initramfs).
fn console() {
    mount("devtmpfs", "/dev", "devtmpfs");
    let c = CString::new("/dev/console").unwrap();
    // SAFETY: valid C string; dup2 onto the standard descriptors.
    unsafe {
        let fd = libc::open(c.as_ptr(), libc::O_RDWR);
        if fd >= 0 {
            libc::dup2(fd, 1);
            libc::dup2(fd, 2);
        }
    }
}

fn mkcg(path: &Path) -> Result<u64, String> {
    std::fs::create_dir(path).map_err(|e| format!("mkdir {}: {e}", path.display()))?;
    cgroup::cgroup_id(path).map_err(|e| e.to_string())
}

/// Runs every check, prints the verdict, powers off.
pub fn run() -> ! {
    mount("proc", "/proc", "proc");
    mount("sysfs", "/sys", "sysfs");
    console();
    mount("cgroup2", "/sys/fs/cgroup", "cgroup2");
    mount("bpf", "/sys/fs/bpf", "bpf");
    loopback_up();
    println!(
        "kernel {}",
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
    );
    let mut r = Report { failed: 0 };
    checks(&mut r);
    println!("RESULT {}", if r.failed == 0 { "ok" } else { "FAIL" });
    // SAFETY: sync and reboot have no memory-safety preconditions.
    unsafe {
        libc::sync();
        libc::reboot(libc::LINUX_REBOOT_CMD_POWER_OFF);
    }
    std::process::exit(0)
}

fn checks(r: &mut Report) {
    r.check(
        "probe",
        match Support::probe() {
            Support::Available => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    // All: loads and passes the verifier without attaching (what the host
    // test would do), and a socket made meanwhile stays TCP.
    r.check(
        "all_loads_without_attaching",
        (|| {
            let p = Program::load().map_err(|e| edgemig_chain(&e))?;
            p.set_scope(&Scope::All).map_err(|e| e.to_string())?;
            expect(
                "unattached program",
                probe::here(libc::AF_INET, libc::SOCK_STREAM, 0),
                TCP,
            )
        })(),
    );

    let root = cgroup::cgroup2_mount().unwrap_or_else(|_| "/sys/fs/cgroup".into());
    let cg = root.join("emtest");
    let sub = cg.join("sub");
    let other = root.join("emother");
    let ids = (|| Ok::<_, String>((mkcg(&cg)?, mkcg(&sub)?, mkcg(&other)?)))();
    let (cg_id, _sub_id, _other_id) = match ids {
        Ok(v) => v,
        Err(e) => return r.check("cgroups", Err(e)),
    };

    let scope = Scope::Cgroups(BTreeSet::from([cg_id]));
    let hook = match Mptcpify::attach(&scope) {
        Ok(h) => h,
        Err(e) => return r.check("attach_cgroups", Err(edgemig_chain(&e))),
    };
    r.check("attach_cgroups", Ok(()));
    let stream = (libc::AF_INET, libc::SOCK_STREAM);
    r.check(
        "in_cgroup_inet_0",
        expect(
            "AF_INET/0 in the cgroup",
            probe::in_cgroup(Some(&cg), stream.0, stream.1, 0),
            MPTCP,
        ),
    );
    r.check(
        "in_cgroup_inet6_tcp",
        expect(
            "AF_INET6/TCP in the cgroup",
            probe::in_cgroup(Some(&cg), libc::AF_INET6, libc::SOCK_STREAM, TCP),
            MPTCP,
        ),
    );
    r.check(
        "in_cgroup_nonblock",
        expect(
            "SOCK_STREAM|SOCK_NONBLOCK in the cgroup",
            probe::in_cgroup(
                Some(&cg),
                libc::AF_INET,
                libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            ),
            MPTCP,
        ),
    );
    r.check(
        "below_the_cgroup",
        expect(
            "AF_INET/0 in a child cgroup",
            probe::in_cgroup(Some(&sub), stream.0, stream.1, 0),
            MPTCP,
        ),
    );
    r.check(
        "outside_here",
        expect(
            "this process (root cgroup)",
            probe::here(stream.0, stream.1, 0),
            TCP,
        ),
    );
    r.check(
        "outside_sibling",
        expect(
            "a sibling cgroup",
            probe::in_cgroup(Some(&other), stream.0, stream.1, 0),
            TCP,
        ),
    );
    r.check(
        "udp_untouched",
        expect(
            "UDP in the cgroup",
            probe::in_cgroup(Some(&cg), libc::AF_INET, libc::SOCK_DGRAM, 0),
            libc::IPPROTO_UDP,
        ),
    );
    r.check(
        "unix_untouched",
        expect(
            "AF_UNIX in the cgroup",
            probe::in_cgroup(Some(&cg), libc::AF_UNIX, libc::SOCK_STREAM, 0),
            0,
        ),
    );
    r.check(
        "tcp_client_to_mptcp_server",
        match probe::tcp_client_to_server_in(&cg, 7300) {
            Ok((MPTCP, true)) => Ok(()),
            Ok((p, e)) => Err(format!("listener protocol {p}, echo {e}")),
            Err(e) => Err(e),
        },
    );
    r.check(
        "scope_reads_back",
        match hook.scope() {
            Ok(s) if s == scope => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    r.check(
        "scope_none",
        (|| {
            hook.set_scope(&Scope::none()).map_err(|e| e.to_string())?;
            expect(
                "after narrowing to none",
                probe::in_cgroup(Some(&cg), stream.0, stream.1, 0),
                TCP,
            )?;
            hook.set_scope(&scope).map_err(|e| e.to_string())?;
            expect(
                "widened again",
                probe::in_cgroup(Some(&cg), stream.0, stream.1, 0),
                MPTCP,
            )
        })(),
    );
    r.check(
        "detach",
        (|| {
            hook.detach().map_err(|e| e.to_string())?;
            expect(
                "after detach",
                probe::in_cgroup(Some(&cg), stream.0, stream.1, 0),
                TCP,
            )
        })(),
    );

    pinned(r, &cg, cg_id);

    // All, in this VM only.
    r.check(
        "all_attached",
        (|| {
            let hook = Mptcpify::attach(&Scope::All).map_err(|e| edgemig_chain(&e))?;
            expect(
                "this process under All",
                probe::here(stream.0, stream.1, 0),
                MPTCP,
            )?;
            expect(
                "a sibling cgroup under All",
                probe::in_cgroup(Some(&other), stream.0, stream.1, 0),
                MPTCP,
            )?;
            drop(hook);
            expect(
                "after dropping the All hook",
                probe::here(stream.0, stream.1, 0),
                TCP,
            )
        })(),
    );

    for dir in [&sub, &cg, &other] {
        let _ = std::fs::remove_dir(dir);
    }
}

/// Pinned: the hook outlives its handle, is found again, and goes with
/// its pins.
fn pinned(r: &mut Report, cg: &Path, cg_id: u64) {
    let base = Path::new("/sys/fs/bpf/edgemig-test");
    let stream = (libc::AF_INET, libc::SOCK_STREAM);
    let scope = Scope::Cgroups(BTreeSet::from([cg_id]));
    r.check(
        "pinned",
        (|| {
            // A pin directory of another version is cleaned up.
            std::fs::create_dir_all(base.join("mptcpify-v0")).map_err(|e| e.to_string())?;
            let hook =
                Mptcpify::attach_pinned(base, &Scope::none()).map_err(|e| edgemig_chain(&e))?;
            if base.join("mptcpify-v0").exists() {
                return Err("the old version's pin directory is still there".into());
            }
            let dir = hook.pin_dir().ok_or("not pinned")?.to_path_buf();
            drop(hook);
            // Still attached after the handle is gone: set the scope through a
            // second attach_pinned, which must reuse the pin.
            let again = Mptcpify::attach_pinned(base, &scope).map_err(|e| edgemig_chain(&e))?;
            if again.pin_dir() != Some(dir.as_path()) {
                return Err("the second attach did not reuse the pin".into());
            }
            drop(again);
            expect(
                "pinned hook, handle dropped",
                probe::in_cgroup(Some(cg), stream.0, stream.1, 0),
                MPTCP,
            )?;
            let opened = Mptcpify::open_pinned(base)
                .map_err(|e| edgemig_chain(&e))?
                .ok_or("pin not found")?;
            if opened.scope().map_err(|e| e.to_string())? != scope {
                return Err("the pinned scope differs".into());
            }
            opened.detach().map_err(|e| edgemig_chain(&e))?;
            if dir.exists() {
                return Err("the pin directory survived detach".into());
            }
            if Mptcpify::open_pinned(base)
                .map_err(|e| e.to_string())?
                .is_some()
            {
                return Err("a pin is still there".into());
            }
            expect(
                "after detaching the pin",
                probe::in_cgroup(Some(cg), stream.0, stream.1, 0),
                TCP,
            )
        })(),
    );
}

fn edgemig_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}
