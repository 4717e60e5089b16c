//! An agent restart loses nothing the host told it: the real
//! `edgemig-guest agent` process runs in a throwaway namespace (as
//! systemd would run it, serving on a Unix socket instead of the
//! virtio-serial port), configures one NIC and stages a plan for another,
//! both named by MAC; it is killed (SIGKILL) and a new process started
//! with the same state directory, as `Restart=always` does. The new agent
//! announces itself again, tore nothing down, still has the plan and
//! applies it when the carrier comes; a NIC that lost its address while
//! no agent ran gets it back, with the main default route left where the
//! host last put it.

mod common;

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Ns, assert_policy, assert_up, is_root, main_defaults, snapshot};
use edgemig_guest::state::Saved;
use edgemig_guest_proto::v3::{
    AgentInfo, GuestEvent, GuestMessage, GuestOutcome, GuestReply, GuestRequest, HostMessage,
};
use edgemig_guest_proto::{MacAddr, NicPlanState, PROTOCOL_VERSION};

/// Upper bound for anything to happen (it takes milliseconds; the bound
/// only keeps a broken agent from hanging the test).
const DEADLINE: Duration = Duration::from_secs(30);

/// One agent process; killed (by pid) and reaped on drop. Its stderr goes
/// to a log printed when the test fails.
struct AgentProc {
    child: Option<Child>,
    log: PathBuf,
}

impl AgentProc {
    fn start(ns: &Ns, sock: &Path, state: &Path, log: &Path) -> Self {
        let err = File::options().create(true).append(true).open(log).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.0])
            .arg(env!("CARGO_BIN_EXE_edgemig-guest"))
            .args(["agent", "--no-service", "--port-path"])
            .arg(sock)
            .arg("--state-dir")
            .arg(state)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .expect("start the agent");
        Self {
            child: Some(child),
            log: log.to_path_buf(),
        }
    }

    /// SIGKILL, then reap.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "agent log:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

/// The host end of one agent connection.
struct Host {
    w: UnixStream,
    r: BufReader<UnixStream>,
    next: u64,
}

impl Host {
    /// Waits for the agent to connect and announce itself.
    fn accept(listener: &UnixListener) -> (Self, AgentInfo) {
        listener.set_nonblocking(true).unwrap();
        let t0 = Instant::now();
        let stream = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(t0.elapsed() < DEADLINE, "the agent never connected");
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("accept: {e}"),
            }
        };
        stream.set_nonblocking(false).unwrap();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut host = Self {
            r: BufReader::new(stream.try_clone().unwrap()),
            w: stream,
            next: 1,
        };
        match host.recv() {
            GuestMessage::Event {
                event: GuestEvent::Ready(info),
            } => (host, info),
            other => panic!("expected Ready, got {other:?}"),
        }
    }

    fn recv(&mut self) -> GuestMessage {
        let mut line = String::new();
        self.r.read_line(&mut line).expect("read from the agent");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    }

    fn request(&mut self, request: GuestRequest) -> GuestReply {
        let id = self.next;
        self.next += 1;
        let line = serde_json::to_string(&HostMessage { id, request }).unwrap();
        writeln!(self.w, "{line}").unwrap();
        match self.recv() {
            GuestMessage::Response {
                id: got,
                outcome: GuestOutcome::Ok(reply),
            } if got == id => reply,
            other => panic!("request {id}: {other:?}"),
        }
    }

    fn plans(&mut self) -> Vec<edgemig_guest_proto::NicPlanStatus> {
        match self.request(GuestRequest::NicPlans) {
            GuestReply::NicPlans(r) => r.plans,
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_restarted_agent_keeps_what_the_host_told_it() {
    if !is_root() {
        return;
    }
    let ns = Ns::new();
    let mac0: MacAddr = "52:54:00:00:00:0a".parse().unwrap();
    let mac1: MacAddr = "52:54:01:00:00:0a".parse().unwrap();
    ns.veth("tg0");
    ns.veth_down("tg1");
    ns.ip(&["link", "set", "tg0", "address", &mac0.to_string()]);
    ns.ip(&["link", "set", "tg1", "address", &mac1.to_string()]);
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("port.sock");
    let state = dir.path().join("state");
    let log = dir.path().join("agent.log");
    let listener = UnixListener::bind(&sock).unwrap();

    let mut agent = AgentProc::start(&ns, &sock, &state, &log);
    let (mut host, first) = Host::accept(&listener);
    assert_eq!(first.protocol, PROTOCOL_VERSION);
    assert_eq!(first.kernel, edgemig_guest::info::kernel_release());
    let up = host.request(GuestRequest::NicUp {
        nic: "eth0".into(),
        mac: Some(mac0),
        address: "10.10.0.5/24".into(),
        gateway: "10.10.0.1".into(),
    });
    match up {
        GuestReply::Nic(n) => assert_eq!((n.nic.as_str(), n.mac), ("tg0", Some(mac0))),
        other => panic!("{other:?}"),
    }
    let staged = match host.request(GuestRequest::NicPlan {
        nic: "eth1".into(),
        mac: Some(mac1),
        address: "10.20.0.5/24".into(),
        gateway: "10.20.0.1".into(),
    }) {
        GuestReply::NicPlan(p) => p,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        (staged.nic.as_str(), &staged.state),
        ("tg1", &NicPlanState::Pending)
    );
    let before = snapshot(&ns);

    // Restart=always after a crash.
    agent.kill();
    drop(host);
    let saved: Saved =
        serde_json::from_slice(&std::fs::read(state.join("state.json")).unwrap()).unwrap();
    assert_eq!(saved.plans.len(), 1);
    assert_eq!(saved.plans[0].nic, "tg1");
    assert_eq!(saved.nics.len(), 1);
    assert_eq!(saved.nics[0].nic, "tg0");

    let mut agent = AgentProc::start(&ns, &sock, &state, &log);
    let (mut host, second) = Host::accept(&listener);
    assert!(second.boot_ms >= first.boot_ms, "{first:?} {second:?}");
    assert_eq!(snapshot(&ns), before, "the restart changed the network");
    let plans = host.plans();
    assert_eq!(plans.len(), 1, "{plans:?}");
    assert_eq!(plans[0].state, NicPlanState::Pending);
    assert_eq!(plans[0].staged_ms, staged.staged_ms);
    assert_eq!(plans[0].mac, Some(mac1));

    // The carrier comes: the new agent applies the old agent's plan.
    ns.ip(&["link", "set", "tg1p", "up"]);
    let t0 = Instant::now();
    let applied = loop {
        let p = host.plans().remove(0);
        if p.state != NicPlanState::Pending {
            break p;
        }
        assert!(t0.elapsed() < DEADLINE, "plan still pending");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(applied.state, NicPlanState::Applied, "{applied:?}");
    assert_up(&ns, "tg1", "10.20.0.5", "10.20.0.1");
    assert_policy(&ns, "tg0", "10.10.0.5", "10.10.0.1");
    let defaults = main_defaults(&ns);
    assert_eq!(defaults, ["default via 10.20.0.1 dev tg1 proto static "]);

    // Someone flushes tg0 while no agent runs: the next agent puts its
    // configuration back, and the default route stays with tg1.
    agent.kill();
    drop(host);
    ns.ip(&["addr", "flush", "dev", "tg0"]);
    let _agent = AgentProc::start(&ns, &sock, &state, &log);
    let (mut host, _) = Host::accept(&listener);
    assert_up(&ns, "tg0", "10.10.0.5", "10.10.0.1");
    assert_up(&ns, "tg1", "10.20.0.5", "10.20.0.1");
    assert_eq!(main_defaults(&ns), defaults);
    // Retiring by MAC forgets the NIC for good.
    match host.request(GuestRequest::NicRetire {
        nic: "eth0".into(),
        mac: Some(mac0),
    }) {
        GuestReply::Nic(n) => assert_eq!(n.nic, "tg0"),
        other => panic!("{other:?}"),
    }
    let saved: Saved =
        serde_json::from_slice(&std::fs::read(state.join("state.json")).unwrap()).unwrap();
    let nics: Vec<&str> = saved.nics.iter().map(|n| n.nic.as_str()).collect();
    assert_eq!(nics, ["tg1"]);
}
