//! The guest agent's main loop: starts the echo/bulk service, finds and
//! opens the virtio-serial port, announces `Ready` and serves requests
//! forever. When the host side goes away (a read returns EOF) it waits
//! ~200 ms and carries on, reopening the port when needed; each time the
//! host comes back it gets a fresh `Ready` event.

use crate::handler::{self, Agent};
use crate::info::agent_info;
use crate::port::{self, PortKind};
use crate::service;
use edgemig_guest_proto::PORT_NAME;
use std::io::BufReader;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
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

/// Runs the agent forever.
pub fn run(opts: &AgentOptions) -> ! {
    if let Some(addr) = opts.service
        && let Err(e) = service::spawn(addr, false)
    {
        eprintln!("edgemig-guest: service on {addr} not started: {e}");
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
    let agent = Agent::new(agent_info());
    // Kept for the agent's whole life (this function never returns).
    let _watcher = match crate::net::watch::spawn(std::sync::Arc::clone(agent.planner())) {
        Ok(w) => Some(w),
        Err(e) => {
            eprintln!("edgemig-guest: link watcher not started (plans apply only at staging): {e}");
            None
        }
    };
    eprintln!(
        "edgemig-guest: agent {} (protocol {}) up at {} ms",
        agent.info().version,
        agent.info().protocol,
        agent.info().boot_ms
    );
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
