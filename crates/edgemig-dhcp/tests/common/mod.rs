//! Fixture of the black-box tests: a server namespace holding a VM bridge
//! (gateway 10.99.0.1/24) and the DHCP server on it, and a client
//! namespace joined to the bridge by a veth pair whose client end has a
//! chosen MAC address. Names are unique per run; dropping the fixture
//! stops the server, then deletes both namespaces (their links go with
//! them), also when a test fails.

#![allow(dead_code)]

pub mod udhcpc;

use std::net::Ipv4Addr;
use std::sync::mpsc;
use std::thread::JoinHandle;

use edgemig_dhcp::{DhcpServer, Lease, LeaseTable, MacAddr, ServerConfig, Stats, StatsSnapshot};
use edgemig_testkit::{NetNs, unique_prefix};

/// The bridge's address: server identifier and router.
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
/// Prefix length of the VM network.
pub const PREFIX: u8 = 24;
/// MAC address of the client's veth end.
pub const CLIENT_MAC: &str = "52:54:00:99:00:01";

pub fn mac() -> MacAddr {
    CLIENT_MAC.parse().unwrap()
}

pub fn lease(last: u8) -> Lease {
    Lease::new(Ipv4Addr::new(10, 99, 0, last), PREFIX, GATEWAY).unwrap()
}

/// The DHCP server running on its own thread inside the server namespace
/// (the thread enters the namespace, the test's threads never do).
struct ServerThread {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ServerThread {
    fn start(ns: &str, bridge: &str, leases: LeaseTable) -> (Self, Stats) {
        let (ready_tx, ready_rx) = mpsc::channel::<Result<Stats, String>>();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ns, bridge) = (ns.to_string(), bridge.to_string());
        let thread = std::thread::spawn(move || {
            let entered = edgemig_netns::in_netns(&ns, || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("runtime: {e}")));
                        return;
                    }
                };
                runtime.block_on(async {
                    match DhcpServer::start(&bridge, ServerConfig::new(GATEWAY), leases) {
                        Ok(server) => {
                            let _ = ready_tx.send(Ok(server.stats()));
                            let _ = stopped.await;
                            server.stop().await;
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(format!("{e}: {:?}", e)));
                        }
                    }
                });
            });
            if let Err(e) = entered {
                eprintln!("cannot enter {ns}: {e}");
            }
        });
        let mut guard = Self {
            stop: Some(stop),
            thread: Some(thread),
        };
        match ready_rx.recv() {
            Ok(Ok(stats)) => (guard, stats),
            Ok(Err(e)) => {
                guard.shutdown();
                panic!("DHCP server did not start: {e}");
            }
            Err(_) => {
                guard.shutdown();
                panic!("DHCP server thread ended before starting");
            }
        }
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// One VM network with one client port. Fields drop in order: server,
/// client namespace, server namespace, temporary directory.
pub struct Site {
    server: Option<ServerThread>,
    stats: Option<Stats>,
    /// The lease table the server reads (the agent's handle).
    pub leases: LeaseTable,
    /// The client's namespace.
    pub client: NetNs,
    /// The server's namespace (bridge and host veth end).
    pub server_ns: NetNs,
    /// Bridge name.
    pub bridge: String,
    /// Client interface (veth end in the client namespace).
    pub client_if: String,
    /// Files of the test (udhcpc script, records).
    pub dir: tempfile::TempDir,
}

impl Site {
    /// Namespaces, bridge and veth pair; the server is not running yet.
    pub fn new() -> Self {
        let p = unique_prefix();
        let server_ns = NetNs::new(&format!("{p}s"));
        let client = NetNs::new(&format!("{p}c"));
        let bridge = format!("{p}br");
        let host_if = format!("{p}h");
        let client_if = format!("{p}v");
        let gw = format!("{GATEWAY}/{PREFIX}");
        server_ns.exec(&["ip", "link", "add", &bridge, "type", "bridge"]);
        server_ns.exec(&["ip", "addr", "add", &gw, "dev", &bridge]);
        server_ns.exec(&["ip", "link", "set", &bridge, "up"]);
        server_ns.exec(&[
            "ip",
            "link",
            "add",
            &host_if,
            "type",
            "veth",
            "peer",
            "name",
            &client_if,
            "netns",
            client.name(),
        ]);
        server_ns.exec(&["ip", "link", "set", &host_if, "master", &bridge, "up"]);
        client.exec(&["ip", "link", "set", &client_if, "address", CLIENT_MAC]);
        client.exec(&["ip", "link", "set", &client_if, "up"]);
        let dir = tempfile::Builder::new()
            .prefix(&format!("{p}-dhcp-"))
            .tempdir()
            .expect("tempdir");
        Self {
            server: None,
            stats: None,
            leases: LeaseTable::new(),
            client,
            server_ns,
            bridge,
            client_if,
            dir,
        }
    }

    /// The fixture with the server running on the bridge.
    pub fn with_server() -> Self {
        let mut site = Self::new();
        site.start_server();
        site
    }

    /// Starts the server on the bridge.
    pub fn start_server(&mut self) {
        let (server, stats) =
            ServerThread::start(self.server_ns.name(), &self.bridge, self.leases.clone());
        self.server = Some(server);
        self.stats = Some(stats);
    }

    /// Stops the server and waits until it has closed its socket.
    pub fn stop_server(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.shutdown();
        }
    }

    /// The server's counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.as_ref().map(Stats::snapshot).unwrap_or_default()
    }
}
