//! The guest agent's main loop: sets the kernel's MPTCP settings, probes
//! what it can do for applications, takes back what an earlier run saved
//! (staged plans, NIC configuration, the MPTCP scope; [`crate::state`]),
//! starts its watchers and the echo/bulk service, finds and opens the
//! virtio-serial port, announces `Ready` and serves requests forever.
//! When the host side goes away (a read returns EOF) it waits ~200 ms and
//! carries on, reopening the port when needed; each time the host comes
//! back it gets a fresh `Ready` event — and so after every agent restart.
//!
//! Nothing here depends on the busybox image: the port is found through
//! sysfs or udev's `/dev/virtio-ports/` link ([`crate::port`]), the kernel
//! modules the agent needs load on demand in a distribution (sock_diag
//! requests autoload `inet_diag`, `tcp_diag`, `mptcp_diag`), and under
//! systemd a `Type=notify` unit is told when the agent is ready.

use crate::apps::{self, Apps, hook::BpfHook, hook::HookCtl, hook::NoHook};
use crate::handler::{self, Agent};
use crate::info::agent_info;
use crate::port::{self, PortKind};
use crate::service;
use crate::state::{Loaded, Store};
use edgemig_guest_proto::PORT_NAME;
use edgemig_guest_proto::mptcp_apps::HookSupport;
use edgemig_mptcpify::{Support, Unavailable};
use std::io::BufReader;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Pause after EOF or a failure before trying again.
const RETRY: Duration = Duration::from_millis(200);
/// Pause between scans for the port while it does not exist yet.
const SCAN_RETRY: Duration = Duration::from_secs(1);

/// Where sysfs lists virtio-serial ports.
const SYS_PORTS: &str = "/sys/class/virtio-ports";

/// Errors of the agent loop (logged, never fatal).
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Finding or opening the port failed.
    #[error(transparent)]
    Port(#[from] port::PortError),
    /// Serving requests failed.
    #[error(transparent)]
    Handler(#[from] handler::HandlerError),
}

/// Options of `edgemig-guest agent`.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// Use this path instead of searching for the virtio-serial port.
    pub port_path: Option<PathBuf>,
    /// Address of the echo/bulk service; `None` disables it.
    pub service: Option<SocketAddr>,
    /// Where the agent keeps what must survive its restarts
    /// ([`crate::state::DEFAULT_STATE_DIR`]).
    pub state_dir: PathBuf,
}

/// Resolves the port path, waiting until it appears.
fn wait_for_port(opts: &AgentOptions) -> PathBuf {
    if let Some(p) = &opts.port_path {
        return p.clone();
    }
    let mut logged = false;
    loop {
        match port::find_port(Path::new(SYS_PORTS), Path::new("/dev"), PORT_NAME) {
            Ok(p) => return p,
            Err(e) => {
                if !logged {
                    eprintln!("edgemig-guest: {e}; waiting for it");
                    logged = true;
                }
                std::thread::sleep(SCAN_RETRY);
            }
        }
    }
}

/// The first kernel with `update_socket_protocol`.
const HOOK_SINCE: (u32, u32) = (6, 6);

/// `(major, minor)` of a kernel release (`6.1.0-57-cloud-amd64`).
pub fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(['.', '-', '+']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The BPF hook's availability, as the protocol reports it. A kernel
/// older than 6.6 has no hook: its BTF is not even read (that walk costs
/// tens of milliseconds under TCG, at every boot of the default guest).
pub fn probe_hook() -> HookSupport {
    if kernel_version(&crate::info::kernel_release()).is_some_and(|v| v < HOOK_SINCE) {
        return HookSupport::NoHook;
    }
    match Support::probe() {
        Support::Available => HookSupport::Available,
        Support::Unavailable(Unavailable::NoBtf) => HookSupport::NoBtf,
        Support::Unavailable(Unavailable::NoHook) => HookSupport::NoHook,
        Support::Unavailable(Unavailable::NoPermission) => HookSupport::NoPermission,
        Support::Unavailable(Unavailable::Failed(why)) => HookSupport::Failed(why),
    }
}

/// The MPTCP-for-applications manager of this guest, adopting a hook an
/// earlier agent pinned.
fn build_apps(bpf: HookSupport, store: &Arc<Store>) -> Arc<Apps> {
    let systemd = apps::systemd::booted()
        .then(|| Arc::new(apps::systemd::Systemctl) as Arc<dyn apps::systemd::Systemd>);
    let hook: Box<dyn HookCtl> = if bpf == HookSupport::Available {
        Box::new(BpfHook::adopt())
    } else {
        Box::new(NoHook)
    };
    let env = apps::Env {
        mptcpize: apps::systemd::has_mptcpize(),
        systemd,
        bpf,
        cgroup_root: apps::cgroup_root(),
    };
    Arc::new(Apps::new(env, hook, Arc::clone(store)))
}

/// `edgemig-guest mptcp-apps-off`: with no agent running, removes what
/// agents set up for applications (the pinned BPF hook, `mptcpize` of
/// their units) and records the scope as off in `state_dir`.
pub fn mptcp_apps_off(state_dir: &Path) -> Result<(), apps::AppsError> {
    let (store, _) = Store::open(state_dir);
    let apps = build_apps(probe_hook(), &Arc::new(store));
    apps.reset().map(drop)
}

/// Builds the agent: probes, opens the store in `state_dir`, takes back
/// what it holds. Returns the agent and its watchers' handles (keep them).
pub fn start(state_dir: &Path) -> (Agent, Vec<Box<dyn std::any::Any>>) {
    let bpf = probe_hook();
    eprintln!("edgemig-guest: MPTCP hook for applications: {bpf:?}");
    let (store, loaded) = Store::open(state_dir);
    match &loaded {
        Loaded::Fresh => {}
        Loaded::Restored => eprintln!(
            "edgemig-guest: restarted; taking back the state in {}",
            state_dir.display()
        ),
        Loaded::Discarded(e) => eprintln!(
            "edgemig-guest: {}; starting afresh",
            handler::error_chain(e)
        ),
    }
    let store = Arc::new(store);
    let apps = build_apps(bpf, &store);
    let agent = Agent::with_parts(
        agent_info(apps.support()),
        Arc::clone(&store),
        Arc::clone(&apps),
    );
    let mut keep: Vec<Box<dyn std::any::Any>> = Vec::new();
    if matches!(loaded, Loaded::Restored) {
        let plans = agent.planner().restore();
        if plans > 0 {
            eprintln!("edgemig-guest: {plans} staged NIC plan(s) taken back");
        }
        crate::restore::restore_nics(&store, agent.net_lock());
    }
    match apps.restore() {
        Ok(Some(r)) => eprintln!(
            "edgemig-guest: MPTCP for applications restored: {:?}",
            r.scope
        ),
        Ok(None) => {}
        Err(e) => eprintln!(
            "edgemig-guest: cannot restore MPTCP for applications: {}",
            handler::error_chain(&e)
        ),
    }
    match crate::net::watch::spawn(Arc::clone(agent.planner())) {
        Ok(w) => keep.push(Box::new(w)),
        Err(e) => {
            eprintln!("edgemig-guest: link watcher not started (plans apply only at staging): {e}")
        }
    }
    match apps::watch::spawn(Arc::clone(&apps)) {
        Ok(w) => keep.push(Box::new(w)),
        Err(e) => eprintln!("edgemig-guest: cgroup watcher not started: {e}"),
    }
    (agent, keep)
}

/// Runs the agent forever.
pub fn run(opts: &AgentOptions) -> ! {
    if let Some(addr) = opts.service
        && let Err(e) = service::spawn(addr, false)
    {
        eprintln!("edgemig-guest: service on {addr} not started: {e}");
    }
    for e in crate::sysctl::set_mptcp() {
        eprintln!("edgemig-guest: {}", handler::error_chain(&e));
    }
    if let Err(e) = crate::net::set_mptcp_limits() {
        eprintln!("edgemig-guest: MPTCP limits not set: {e}");
    }
    if !crate::net::has_net_admin() {
        eprintln!(
            "edgemig-guest: no CAP_NET_ADMIN: the kernel withholds MPTCP tokens, \
             so NetStatus counts each subflow as a connection of its own"
        );
    }
    // Kept for the agent's whole life (this function never returns).
    let (agent, _watchers) = start(&opts.state_dir);
    eprintln!(
        "edgemig-guest: agent {} (protocol {}) up at {} ms, kernel {}{}",
        agent.info().version,
        agent.info().protocol,
        agent.info().boot_ms,
        agent.info().kernel,
        if agent.info().systemd {
            ", under systemd"
        } else {
            ""
        },
    );
    if let Err(e) = crate::notify::ready() {
        eprintln!("edgemig-guest: {}", handler::error_chain(&e));
    }
    loop {
        let path = wait_for_port(opts);
        if let Err(e) = session(&path, &agent) {
            eprintln!("edgemig-guest: {}: {e}", path.display());
        }
        std::thread::sleep(RETRY);
    }
}

/// One opening of the port: announce, serve, and for a device keep serving
/// across host disconnections. Returns when the port must be reopened.
fn session(path: &Path, agent: &Agent) -> Result<(), AgentError> {
    let opened = port::open(path)?;
    eprintln!("edgemig-guest: serving on {}", path.display());
    let writer = handler::shared_writer(opened.writer);
    let mut reader = BufReader::new(opened.reader);
    loop {
        // On a virtio-serial port this write waits until the host is connected.
        handler::send_ready(&writer, agent.info())?;
        handler::serve(&mut reader, &writer, agent)?;
        if opened.kind == PortKind::Socket {
            return Ok(());
        }
        std::thread::sleep(RETRY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions() {
        assert_eq!(kernel_version("6.1.0-57-cloud-amd64"), Some((6, 1)));
        assert_eq!(kernel_version("6.12.95+deb12-cloud-amd64"), Some((6, 12)));
        assert_eq!(kernel_version("6.18.44-fc-v1045"), Some((6, 18)));
        assert_eq!(kernel_version("5.14"), Some((5, 14)));
        assert_eq!(kernel_version("junk"), None);
        assert!(kernel_version("6.1.0").unwrap() < HOOK_SINCE);
        assert!(kernel_version("6.12.0").unwrap() >= HOOK_SINCE);
    }
}
