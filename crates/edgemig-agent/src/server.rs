//! Running the agent: open the manager, serve the API on the local Unix
//! socket until `shutdown` resolves. Running VMs keep running when the agent
//! stops; the next agent re-attaches to them.

use std::future::Future;
use std::path::PathBuf;

use tokio::net::UnixListener;

use crate::config::SiteConfig;
use crate::manager::{Manager, ManagerError};
use crate::netdev::NetdevError;
use crate::qemu::QemuBinaryError;
use crate::store::StoreError;

/// Errors that stop the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// QEMU is missing or too old.
    #[error("QEMU check failed")]
    Qemu(#[source] QemuBinaryError),
    /// The state directory is unusable.
    #[error("Cannot use state directory {path}")]
    StateDir {
        /// Directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The store could not be opened.
    #[error("Cannot open the VM store")]
    Store(#[source] StoreError),
    /// Host networking failed.
    #[error("Cannot set up the VM network")]
    Netdev(#[source] NetdevError),
    /// The TLS files are unusable.
    #[error("Cannot load the site's TLS files")]
    Tls(#[source] edgemig_pki::TlsError),
    /// QEMU's TLS credentials could not be written.
    #[error("Cannot write QEMU's TLS credentials")]
    QemuTls(#[source] edgemig_pki::QemuCredsError),
    /// Re-attaching to running VMs failed.
    #[error("Cannot re-attach to running VMs")]
    Reattach(#[source] ManagerError),
    /// The API group does not exist.
    #[error("The api_group {0:?} does not exist")]
    ApiGroup(String),
    /// QEMU's user does not exist.
    #[error(
        "QEMU's user {0:?} does not exist: create it (useradd --system --no-create-home {0}) or set [qemu] user = \"\" to run QEMU as root"
    )]
    QemuUser(String),
    /// QEMU's user cannot reach the state directory.
    #[error(
        "QEMU's user cannot pass {0}: make the state directory's parents traversable (chmod o+x) or set [qemu] user = \"\""
    )]
    StateDirUnreachable(PathBuf),
    /// The site's DHCP server cannot listen on the VM bridge.
    #[error("Cannot start the DHCP server of the VM network")]
    Dhcp(#[source] edgemig_dhcp::SocketError),
    /// The site directory's config is unusable.
    #[error("Cannot open the site directory")]
    Directory(#[source] edgemig_directory::DirectoryError),
    /// The API socket could not be bound.
    #[error("Cannot listen on {path}")]
    Bind {
        /// Socket path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `listen` is set but there are no TLS files.
    #[error(
        "The config sets `listen` but no [tls] files: agents only talk to each other over mutual TLS"
    )]
    PeerWithoutTls,
    /// Serving failed.
    #[error("API server failed")]
    Serve(#[source] std::io::Error),
}

/// Binds the config's API socket (replacing a stale one).
pub fn bind(config: &SiteConfig) -> Result<UnixListener, AgentError> {
    let path = &config.api_socket;
    let bind_err = |source| AgentError::Bind {
        path: path.clone(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(bind_err)?;
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(bind_err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            "another edgemigd is serving this socket",
        )));
    }
    let _ = std::fs::remove_file(path);
    let group = match &config.api_group {
        Some(name) => Some(
            crate::api_socket::lookup_group(name)
                .ok_or_else(|| AgentError::ApiGroup(name.clone()))?,
        ),
        None => None,
    };
    let listener = UnixListener::bind(path).map_err(bind_err)?;
    crate::api_socket::restrict(path, group).map_err(bind_err)?;
    Ok(listener)
}

/// Runs the agent on `listener` until `shutdown` resolves.
pub async fn run(
    config: SiteConfig,
    listener: UnixListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AgentError> {
    let site = config.site.clone();
    let listen = config.listen;
    let manager = Manager::open(config).await?;
    // A migration reads the spare CPU of the latest window instead of
    // waiting for one before it starts.
    crate::host::watch_spare_cores(crate::migration::source::SPARE_CPU_WINDOW);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut peer_task = None;
    if let Some(addr) = listen {
        let tls = manager.peer_tls().ok_or(AgentError::PeerWithoutTls)?;
        let peer_listener =
            edgemig_pki::mptcp_listener(addr).map_err(|source| AgentError::Bind {
                path: PathBuf::from(addr.to_string()),
                source,
            })?;
        let router = crate::http::peer_router(manager.clone());
        let mut rx = stop_rx.clone();
        let stop = async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        peer_task = Some(tokio::spawn(edgemig_pki::serve(
            peer_listener,
            tls,
            router,
            stop,
        )));
        tracing::info!(%site, %addr, "peer API listening (mutual TLS)");
    }
    check_host_sysctls();
    tracing::info!(%site, "edgemigd ready");
    let admission = crate::api_socket::Admission {
        // SAFETY: geteuid has no preconditions.
        owner: unsafe { libc::geteuid() },
        group: manager
            .config
            .api_group
            .as_deref()
            .and_then(crate::api_socket::lookup_group),
    };
    let listener = crate::api_socket::CheckedListener::new(listener, admission);
    let result = axum::serve(listener, crate::http::router(manager))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(AgentError::Serve);
    let _ = stop_tx.send(true);
    if let Some(task) = peer_task {
        let _ = task.await;
    }
    result?;
    tracing::info!(%site, "edgemigd stopped; VMs keep running");
    Ok(())
}

/// Warns about host settings migrations depend on (`docs/real-hosts.md`):
/// sockets that may queue much unsent data (the VM's last state would wait
/// behind it at every switchover), and migration ports left to ephemeral
/// use (a migration to this site could not listen on them).
fn check_host_sysctls() {
    use edgemig_netns::sysctl::{self, MIGRATION_NOTSENT_LOWAT};
    match sysctl::read_u64("net.ipv4.tcp_notsent_lowat") {
        Ok(value) if value > 4 * MIGRATION_NOTSENT_LOWAT => tracing::warn!(
            value,
            recommended = MIGRATION_NOTSENT_LOWAT,
            "net.ipv4.tcp_notsent_lowat lets migration streams queue megabytes, which lengthens every VM's pause at the switchover; set it to the recommended value (docs/real-hosts.md)"
        ),
        Ok(_) => {}
        Err(error) => tracing::debug!(%error, "cannot read net.ipv4.tcp_notsent_lowat"),
    }
    let key = "net.ipv4.ip_local_reserved_ports";
    let first = sysctl::MIGRATION_PORT_FIRST;
    let last = sysctl::MIGRATION_PORT_LAST;
    match sysctl::read(key) {
        Ok(text) if !sysctl::reserves(&text, first, last) => tracing::warn!(
            reserved = %text,
            recommended = %sysctl::migration_reserved_ports(),
            "{key} does not reserve the migration ports: an outgoing connection may hold one and a migration to this site then fails (docs/real-hosts.md)"
        ),
        Ok(_) => {}
        Err(error) => tracing::debug!(%error, "cannot read {key}"),
    }
}
