//! The checks, run as PID 1 of a throwaway VM whose kernel has the hook:
//! starts the real agent (serving on a Unix socket), talks protocol 3 to
//! it, prints one `CHECK <name> ok|FAIL <detail>` line per check and a
//! final `RESULT ok|FAIL`, then powers the VM off. `Scope::All` is safe
//! here: it changes only this VM.

use std::ffi::CString;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use edgemig_guest_proto::mptcp_apps::{HookSupport, MptcpMechanism, MptcpScope};
use edgemig_guest_proto::v3::{
    AgentInfo, GuestEvent, GuestMessage, GuestOutcome, GuestReply, GuestRequest, HostMessage,
};

const SOCK: &str = "/run/port.sock";
const PIN: &str = "/sys/fs/bpf/edgemig-guest/mptcpify-v1";
const DEADLINE: Duration = Duration::from_secs(120);

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

/// `SO_PROTOCOL` of a fresh `socket(AF_INET, SOCK_STREAM, 0)` of this
/// process, which knows nothing of MPTCP.
fn protocol() -> i32 {
    // SAFETY: plain system calls on a descriptor this function owns.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        let mut v: libc::c_int = -1;
        let mut len = size_of::<libc::c_int>() as libc::socklen_t;
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PROTOCOL,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        );
        libc::close(fd);
        v
    }
}

struct Agent {
    child: Child,
    w: UnixStream,
    r: BufReader<UnixStream>,
    info: AgentInfo,
    next: u64,
}

impl Agent {
    fn start(listener: &UnixListener) -> Result<Self, String> {
        let child = Command::new("/bin/edgemig-guest")
            .args(["agent", "--no-service", "--port-path", SOCK])
            .args(["--state-dir", "/run/edgemig-guest"])
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("start the agent: {e}"))?;
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let t0 = Instant::now();
        let stream = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if t0.elapsed() > DEADLINE {
                        return Err("the agent never connected".into());
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(e.to_string()),
            }
        };
        stream.set_nonblocking(false).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(DEADLINE))
            .map_err(|e| e.to_string())?;
        let mut r = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
        let mut line = String::new();
        r.read_line(&mut line).map_err(|e| e.to_string())?;
        let info = match serde_json::from_str(&line) {
            Ok(GuestMessage::Event {
                event: GuestEvent::Ready(info),
            }) => info,
            other => return Err(format!("expected Ready: {other:?}")),
        };
        Ok(Self {
            child,
            w: stream,
            r,
            info,
            next: 1,
        })
    }

    fn request(&mut self, request: GuestRequest) -> Result<GuestOutcome, String> {
        let id = self.next;
        self.next += 1;
        let line =
            serde_json::to_string(&HostMessage { id, request }).map_err(|e| e.to_string())?;
        writeln!(self.w, "{line}").map_err(|e| e.to_string())?;
        let mut answer = String::new();
        self.r.read_line(&mut answer).map_err(|e| e.to_string())?;
        match serde_json::from_str(&answer) {
            Ok(GuestMessage::Response { id: got, outcome }) if got == id => Ok(outcome),
            other => Err(format!("request {id}: {other:?}")),
        }
    }

    /// SIGKILL, as a crash.
    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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

fn want(what: &str, ok: bool, detail: impl std::fmt::Debug) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(format!("{what}: {detail:?}"))
    }
}

/// Runs every check, prints the verdict, powers off.
pub fn run() -> ! {
    mount("proc", "/proc", "proc");
    mount("sysfs", "/sys", "sysfs");
    mount("devtmpfs", "/dev", "devtmpfs");
    // SAFETY: valid C string; dup2 onto the standard descriptors.
    unsafe {
        let fd = libc::open(c"/dev/console".as_ptr(), libc::O_RDWR);
        if fd >= 0 {
            libc::dup2(fd, 1);
            libc::dup2(fd, 2);
        }
    }
    mount("tmpfs", "/run", "tmpfs");
    mount("cgroup2", "/sys/fs/cgroup", "cgroup2");
    // No bpffs on /sys/fs/bpf: the agent mounts one itself to pin the hook.
    println!(
        "kernel {}",
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
    );
    let mut r = Report { failed: 0 };
    match UnixListener::bind(SOCK) {
        Ok(l) => checks(&mut r, &l),
        Err(e) => r.check("listen", Err(e.to_string())),
    }
    println!("RESULT {}", if r.failed == 0 { "ok" } else { "FAIL" });
    // SAFETY: sync and reboot have no memory-safety preconditions.
    unsafe {
        libc::sync();
        libc::reboot(libc::LINUX_REBOOT_CMD_POWER_OFF);
    }
    std::process::exit(0)
}

fn checks(r: &mut Report, listener: &UnixListener) {
    let mut agent = match Agent::start(listener) {
        Ok(a) => a,
        Err(e) => return r.check("agent_ready", Err(e)),
    };
    let info = agent.info.clone();
    r.check(
        "agent_ready",
        want(
            "identity",
            info.protocol == edgemig_guest_proto::PROTOCOL_VERSION
                && info.kernel.starts_with("6.12")
                && !info.systemd
                && info.mptcp_apps.bpf == HookSupport::Available
                && !info.mptcp_apps.mptcpize,
            &info,
        ),
    );
    r.check("tcp_before", want("protocol", protocol() == 6, protocol()));
    r.check(
        "units_need_systemd",
        match agent.request(GuestRequest::MptcpApps {
            scope: MptcpScope::Units(vec!["web.service".into()]),
            restart: false,
        }) {
            Ok(GuestOutcome::Error(e)) => want("error", e.contains("systemd"), e),
            other => Err(format!("{other:?}")),
        },
    );
    r.check(
        "all",
        match agent.request(GuestRequest::MptcpApps {
            scope: MptcpScope::All,
            restart: false,
        }) {
            Ok(GuestOutcome::Ok(GuestReply::MptcpApps(rep))) => want(
                "report",
                rep.scope == MptcpScope::All
                    && rep.mechanism == Some(MptcpMechanism::Bpf)
                    && rep.pinned
                    && Path::new(PIN).join("link").exists(),
                rep,
            )
            .and_then(|()| want("protocol under all", protocol() == 262, protocol())),
            other => Err(format!("{other:?}")),
        },
    );
    agent.kill();
    r.check(
        "hook_outlives_the_agent",
        want(
            "protocol with no agent running",
            protocol() == 262,
            protocol(),
        ),
    );
    let mut agent = match Agent::start(listener) {
        Ok(a) => a,
        Err(e) => return r.check("agent_restarted", Err(e)),
    };
    r.check("agent_restarted", Ok(()));
    r.check(
        "scope_restored",
        match agent.request(GuestRequest::MptcpAppsStatus) {
            Ok(GuestOutcome::Ok(GuestReply::MptcpApps(rep))) => {
                want("report", rep.scope == MptcpScope::All && rep.pinned, rep)
                    .and_then(|()| want("protocol", protocol() == 262, protocol()))
            }
            other => Err(format!("{other:?}")),
        },
    );
    r.check(
        "off",
        match agent.request(GuestRequest::MptcpApps {
            scope: MptcpScope::Off,
            restart: false,
        }) {
            Ok(GuestOutcome::Ok(GuestReply::MptcpApps(rep))) => want(
                "report",
                rep.scope == MptcpScope::Off && rep.mechanism.is_none() && !rep.pinned,
                rep,
            )
            .and_then(|()| want("protocol after off", protocol() == 6, protocol()))
            .and_then(|()| want("pin gone", !Path::new(PIN).exists(), PIN)),
            other => Err(format!("{other:?}")),
        },
    );
    agent.kill();
    // Off is remembered too: a new agent attaches nothing.
    let mut agent = match Agent::start(listener) {
        Ok(a) => a,
        Err(e) => return r.check("off_restored", Err(e)),
    };
    r.check(
        "off_restored",
        want("protocol", protocol() == 6, protocol())
            .and_then(|()| want("no pin", !Path::new(PIN).exists(), PIN)),
    );
    // A package removal: the agent is stopped with a scope in force, then
    // `mptcp-apps-off` removes the hook it left pinned.
    let _ = agent.request(GuestRequest::MptcpApps {
        scope: MptcpScope::All,
        restart: false,
    });
    agent.kill();
    r.check(
        "mptcp_apps_off",
        want("pinned before", protocol() == 262, protocol()).and_then(|()| {
            let status = Command::new("/bin/edgemig-guest")
                .args(["mptcp-apps-off", "--state-dir", "/run/edgemig-guest"])
                .status()
                .map_err(|e| e.to_string())?;
            want("exit status", status.success(), status)?;
            want("protocol after", protocol() == 6, protocol())?;
            want("pin gone", !Path::new(PIN).exists(), PIN)
        }),
    );
}
