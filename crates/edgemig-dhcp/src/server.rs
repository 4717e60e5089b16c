//! The server loop: receive on the bridge's port 67, handle, reply, until
//! the shutdown future resolves; and [`DhcpServer`], a handle that runs it
//! as a tokio task and stops it.

use std::future::Future;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::handler::{Handled, Outgoing, handle};
use crate::logs::{LOG_BURST, LOG_PERIOD, Logs};
use crate::ratelimit::RateLimit;
use crate::socket::{SocketError, bind_socket};
use crate::stats::{Event, Stats};
use crate::table::LeaseTable;

/// Largest packet read; the rest of a longer datagram is dropped (DHCP
/// messages are at most a few hundred bytes, 576 unless a client says
/// otherwise).
pub const MAX_PACKET: usize = 4096;

/// Pause after a failed receive, so a persistent socket error cannot spin.
const RECV_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// What the server needs besides its socket and leases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerConfig {
    /// Server identifier (option 54) and source of the replies: the
    /// bridge's gateway address.
    pub server_id: Ipv4Addr,
}

impl ServerConfig {
    /// The configuration of the server whose address is `server_id`.
    pub fn new(server_id: Ipv4Addr) -> Self {
        Self { server_id }
    }
}

async fn send(socket: &UdpSocket, out: &Outgoing) -> std::io::Result<()> {
    socket.send_to(&out.bytes, out.to).await.map(|_| ())
}

/// Serves DHCP on `socket` (from [`bind_socket`]) with the leases of
/// `leases` until `shutdown` resolves, counting into `stats`. Nothing a
/// client sends stops it; socket errors are logged and it goes on.
pub async fn run(
    socket: UdpSocket,
    config: ServerConfig,
    leases: LeaseTable,
    stats: Stats,
    shutdown: impl Future<Output = ()>,
) {
    let mut buf = vec![0u8; MAX_PACKET];
    let mut logs = Logs::default();
    let mut recv_errors = RateLimit::new(LOG_BURST, LOG_PERIOD);
    tokio::pin!(shutdown);
    tracing::info!(server_id = %config.server_id, leases = leases.len(), "DHCP server running");
    loop {
        let received = tokio::select! {
            () = &mut shutdown => break,
            received = socket.recv_from(&mut buf) => received,
        };
        let n = match received {
            Ok((n, _from)) => n,
            Err(error) => {
                if let Some(suppressed) = recv_errors.check(Instant::now()) {
                    tracing::warn!(%error, suppressed, "DHCP: receive failed");
                }
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(RECV_ERROR_PAUSE) => continue,
                }
            }
        };
        let handled = handle(&buf[..n], config.server_id, &leases);
        // Counted before the reply leaves: whoever sees the reply sees
        // the count.
        stats.record(handled.event());
        let failed = match &handled {
            Handled::Decided {
                outgoing: Some(Ok(out)),
                ..
            } => send(&socket, out).await.err(),
            _ => None,
        };
        if failed.is_some()
            || matches!(
                handled,
                Handled::Decided {
                    outgoing: Some(Err(_)),
                    ..
                }
            )
        {
            stats.record(Event::SendFailed);
        }
        logs.report(&handled, failed.as_ref());
    }
    tracing::info!(server_id = %config.server_id, "DHCP server stopped");
}

/// A DHCP server running as a task of the current tokio runtime. Dropping
/// the handle stops the server too (without waiting for it).
#[derive(Debug)]
pub struct DhcpServer {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    stats: Stats,
}

impl DhcpServer {
    /// Binds port 67 on bridge `device` and starts serving `leases` in
    /// the calling thread's network namespace. Must be called inside a
    /// tokio runtime.
    pub fn start(
        device: &str,
        config: ServerConfig,
        leases: LeaseTable,
    ) -> Result<Self, SocketError> {
        let socket = bind_socket(device)?;
        let (stop, stopped) = oneshot::channel::<()>();
        let stats = Stats::new();
        let shutdown = async move {
            // A dropped sender stops the server as well.
            let _ = stopped.await;
        };
        let task = tokio::spawn(run(socket, config, leases, stats.clone(), shutdown));
        Ok(Self {
            stop: Some(stop),
            task,
            stats,
        })
    }

    /// The server's counters.
    pub fn stats(&self) -> Stats {
        self.stats.clone()
    }

    /// Stops the server and waits until its socket is closed.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}
