//! The VM manager: lifecycle of the site's VMs (create, start, stop,
//! delete), supervision of their QEMU processes, and re-attachment to VMs
//! that kept running while the agent was down.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use edgemig_api::{NicInfo, SiteInfo, VmInfo, VmState};
use edgemig_guest_proto::{GuestReply, GuestRequest};
use edgemig_qmp::Qmp;
use tokio::sync::Mutex;

mod create;
mod dhcp;
pub(crate) mod guest_setup;
mod image_push;
mod images;
mod migrate;
mod policy;

pub use crate::migration::steps::prepare::ports;
pub(crate) use policy::unix_ms;

use edgemig_pki::{PeerTls, SiteFiles};

use crate::config::SiteConfig;
use crate::guest_channel::{GuestChannel, GuestChannelError};
use crate::host;
use crate::images::ImageCache;
use crate::migration::registry::Registry;
use crate::netdev::{Netdev, NetdevError};
use crate::qemu::{self, LaunchError, QemuVersion, VmFiles, VmLaunch};
use crate::store::{Store, StoreError};
use crate::vm::VmRecord;

/// How long a guest request may wait for the guest agent to come up.
const GUEST_READY_TIMEOUT: Duration = Duration::from_secs(90);
/// How long one guest request may take once sent.
const GUEST_REQUEST_TIMEOUT: Duration = Duration::from_secs(600);
/// How long QEMU gets to exit after `quit` before it is killed.
const QUIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors of VM operations; each maps to one API error code.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    /// Bad input.
    #[error("{0}")]
    Invalid(String),
    /// No such VM.
    #[error("No VM named {0:?} at this site")]
    NotFound(String),
    /// Something else named does not exist.
    #[error("{0}")]
    Missing(String),
    /// Conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// Something needed is missing now.
    #[error("{0}")]
    Unavailable(String),
    /// The caller may not do this (another site's migration).
    #[error("{0}")]
    Forbidden(String),
    /// The guest agent failed the request or is not reachable.
    #[error("Guest request failed")]
    Guest(#[source] GuestChannelError),
    /// QEMU refused or failed.
    #[error("Cannot start QEMU")]
    Launch(#[source] LaunchError),
    /// QMP failed.
    #[error("QMP request failed")]
    Qmp(#[source] edgemig_qmp::QmpError),
    /// Host networking failed.
    #[error("Host network set-up failed")]
    Netdev(#[source] NetdevError),
    /// The store failed.
    #[error("VM store failed")]
    Store(#[source] StoreError),
    /// File system work failed.
    #[error("{what}")]
    Io {
        /// What was attempted.
        what: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
}

/// How QEMU is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LaunchMode {
    /// A VM booting here.
    Fresh,
    /// A migration destination; the active NIC is tunnelled to
    /// `tunnel_remote`, or on this site's network when the VM's address is
    /// this site's (it comes back home).
    Incoming {
        /// The source site's address (VXLAN remote).
        tunnel_remote: Option<std::net::Ipv4Addr>,
    },
}

/// A running VM's live connections.
#[derive(Debug, Clone)]
pub struct Live {
    pub(crate) qmp: Qmp,
    pub(crate) guest: GuestChannel,
    pub(crate) pid: u32,
    /// For an incoming VM: when its QEMU had the whole migrated state (the
    /// `completed` event), for the report's blackout breakdown.
    pub(crate) arrived: Arc<std::sync::OnceLock<std::time::SystemTime>>,
}

/// Asks the guest agent who it is, in the background: after a re-attach or
/// a migration the guest does not know a new host end is listening, so its
/// readiness is learned from the answer.
pub(crate) fn greet(guest: &GuestChannel, vm: &str) {
    let hello = guest.clone();
    let name = vm.to_string();
    tokio::spawn(async move {
        if let Err(error) = hello
            .request(GuestRequest::Hello, GUEST_READY_TIMEOUT)
            .await
        {
            tracing::warn!(vm = %name, %error, "guest agent did not answer");
        }
    });
}

/// The VM manager of one site.
#[derive(Debug)]
pub struct Manager {
    pub(crate) config: SiteConfig,
    qemu_version: QemuVersion,
    pub(crate) store: Store,
    pub(crate) netdev: Netdev,
    bridge_index: u32,
    pub(crate) live: Mutex<HashMap<String, Live>>,
    /// Serializes lifecycle changes (create, start, stop, delete).
    pub(crate) ops: Mutex<()>,
    /// Migrations driven from here.
    pub(crate) migrations: Registry,
    /// Base images cached at this site.
    pub(crate) images: ImageCache,
    /// TLS for agent-to-agent connections, when the config has TLS files.
    peer_tls: Option<PeerTls>,
    /// Who QEMU runs as (`None`: root).
    pub(crate) qemu_user: Option<qemu::spawn::RunAs>,
    /// The site directory, when configured.
    pub(crate) directory: Option<edgemig_directory::Directory>,
    /// What the follow controller is doing about each VM, in words.
    pub(crate) follow_status: std::sync::Mutex<HashMap<String, String>>,
    /// Serializes peer probe requests (bounded work for other sites).
    pub(crate) probe_gate: Mutex<()>,
    /// Images arriving from other sites.
    pub(crate) receiving: image_push::Receiving,
    /// The addresses the site's DHCP server hands out.
    pub(crate) leases: edgemig_dhcp::LeaseTable,
    /// The site's DHCP server (stopped when the manager goes).
    dhcp: std::sync::Mutex<Option<edgemig_dhcp::DhcpServer>>,
}

/// Lets group `gid` (QEMU's) read the files of `dir`, and nobody else.
fn share_with_group(dir: &std::path::Path, gid: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::os::unix::fs::chown(dir, None, Some(gid))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750))?;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        std::os::unix::fs::chown(&path, None, Some(gid))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640))?;
    }
    Ok(())
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ManagerError {
    let what = what.into();
    move |source| ManagerError::Io { what, source }
}

impl Manager {
    /// Checks QEMU, opens the store, sets up the VM bridge and re-attaches to
    /// VMs that are still running.
    pub async fn open(config: SiteConfig) -> Result<Arc<Self>, crate::server::AgentError> {
        use crate::server::AgentError;
        let qemu_version = qemu::check_binary(&config.qemu.binary).map_err(AgentError::Qemu)?;
        let qemu_user = match config.qemu.user.as_str() {
            "" => None,
            name => Some(
                qemu::spawn::lookup_user(name)
                    .ok_or_else(|| AgentError::QemuUser(name.to_string()))?,
            ),
        };
        std::fs::create_dir_all(config.state_dir.join("vms")).map_err(|source| {
            AgentError::StateDir {
                path: config.state_dir.clone(),
                source,
            }
        })?;
        if let Some(user) = qemu_user
            && let Some(dir) = qemu::spawn::unreachable_dir(&config.state_dir.join("vms"), user)
        {
            return Err(AgentError::StateDirUnreachable(dir));
        }
        let store = Store::open(&config.state_dir.join("store.redb")).map_err(AgentError::Store)?;
        let netdev = Netdev::connect().map_err(AgentError::Netdev)?;
        let net = &config.vm_network;
        let bridge_index = netdev
            .ensure_bridge(&net.bridge, net.gateway(), net.subnet.prefix_len())
            .await
            .map_err(AgentError::Netdev)?;
        let peer_tls = match &config.tls {
            Some(files) => {
                let site = SiteFiles {
                    ca: files.ca.clone(),
                    cert: files.cert.clone(),
                    key: files.key.clone(),
                };
                let tls = PeerTls::load(&site).map_err(AgentError::Tls)?;
                let dir = config.state_dir.join("qemu-tls");
                edgemig_pki::write_qemu_creds(&site, &dir).map_err(AgentError::QemuTls)?;
                if let Some(user) = qemu_user {
                    share_with_group(&dir, user.gid).map_err(|source| AgentError::StateDir {
                        path: dir.clone(),
                        source,
                    })?;
                }
                Some(tls)
            }
            None => None,
        };
        let migrations = Registry::open(config.state_dir.join("migrations.jsonl"));
        let directory = match &config.directory {
            Some(d) => Some(d.connect().await.map_err(AgentError::Directory)?),
            None => None,
        };
        let manager = Arc::new(Self {
            migrations,
            directory,
            follow_status: std::sync::Mutex::new(HashMap::new()),
            probe_gate: Mutex::new(()),
            receiving: image_push::Receiving::default(),
            leases: edgemig_dhcp::LeaseTable::new(),
            dhcp: std::sync::Mutex::new(None),
            images: ImageCache::new(config.state_dir.join("images")),
            peer_tls,
            qemu_user,
            config,
            qemu_version,
            store,
            netdev,
            bridge_index,
            live: Mutex::new(HashMap::new()),
            ops: Mutex::new(()),
        });
        manager.reattach_all().await.map_err(AgentError::Reattach)?;
        manager
            .recover_migrations()
            .await
            .map_err(AgentError::Reattach)?;
        manager.sync_leases();
        let dhcp = edgemig_dhcp::DhcpServer::start(
            &manager.config.vm_network.bridge,
            edgemig_dhcp::ServerConfig::new(manager.config.vm_network.gateway()),
            manager.leases.clone(),
        )
        .map_err(AgentError::Dhcp)?;
        *manager
            .dhcp
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(dhcp);
        crate::follow::start(&manager);
        Ok(manager)
    }

    /// What the agent says about its site.
    pub async fn site(&self) -> Result<SiteInfo, ManagerError> {
        Ok(SiteInfo {
            site: self.config.site.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            qemu_version: self.qemu_version.to_string(),
            vm_subnet: self.config.vm_network.subnet.to_string(),
            vms: self.store.all().map_err(ManagerError::Store)?.len(),
        })
    }

    pub(crate) fn files(&self, name: &str) -> VmFiles {
        VmFiles::new(self.config.state_dir.join("vms").join(name))
    }

    pub(crate) fn record(&self, name: &str) -> Result<VmRecord, ManagerError> {
        self.store
            .all()
            .map_err(ManagerError::Store)?
            .into_iter()
            .find(|r| r.name == name)
            .ok_or_else(|| ManagerError::NotFound(name.to_string()))
    }

    pub(crate) async fn info(&self, record: &VmRecord) -> VmInfo {
        let live = self.live.lock().await.get(&record.name).cloned();
        let files = self.files(&record.name);
        let running = record.state == VmState::Running;
        // The active NIC carries the address (on the site's VM network
        // once a handoff finished); the other one waits for the next move.
        let active = record.active_nic.min(1);
        let nics = (0..2u8)
            .map(|i| NicInfo {
                name: format!("nic{i}"),
                mac: record.mac(i),
                tap: record.tap_name(i),
                bridge: (i == active).then(|| self.config.vm_network.bridge.clone()),
                link_up: running && i == active,
                address: (i == active).then(|| format!("{}/{}", record.address, record.prefix_len)),
            })
            .collect();
        VmInfo {
            name: record.name.clone(),
            state: record.state,
            memory_mib: record.memory_mib,
            vcpus: record.vcpus,
            disk_mib: record.disk_mib,
            base_image: record.base_digest.clone(),
            image: match &record.boot {
                crate::vm::Boot::Disk { origin, .. } => Some(origin.clone()),
                crate::vm::Boot::Builtin => None,
            },
            firmware: record.boot.firmware(),
            mptcp_apps: record.mptcp_apps.clone(),
            pid: record.pid,
            nics,
            guest: live.and_then(|l| l.guest.agent()),
            policy: self.policy_view(record),
            serial_log: files.serial_log().display().to_string(),
            qmp_socket: files.qmp().display().to_string(),
        }
    }

    /// All VMs of the site.
    pub async fn list(&self) -> Result<Vec<VmInfo>, ManagerError> {
        let mut out = Vec::new();
        for record in self.store.all().map_err(ManagerError::Store)? {
            out.push(self.info(&record).await);
        }
        Ok(out)
    }

    /// One VM.
    pub async fn get(&self, name: &str) -> Result<VmInfo, ManagerError> {
        let record = self.record(name)?;
        Ok(self.info(&record).await)
    }

    fn image(&self) -> Result<(PathBuf, PathBuf), ManagerError> {
        let kernel = self.config.image_dir.join("vmlinuz");
        let initramfs = self.config.image_dir.join("initramfs.cpio");
        if !kernel.is_file() || !initramfs.is_file() {
            return Err(ManagerError::Unavailable(format!(
                "Guest image missing in {}: run `edgemig image build --out {}`",
                self.config.image_dir.display(),
                self.config.image_dir.display()
            )));
        }
        Ok((kernel, initramfs))
    }

    /// Starts a stopped VM and returns once QEMU runs (the guest boots on).
    pub async fn start(self: &Arc<Self>, name: &str) -> Result<VmInfo, ManagerError> {
        let _op = self.ops.lock().await;
        let mut record = self.record(name)?;
        if record.state == VmState::Running {
            return Err(ManagerError::Conflict(format!(
                "VM {name:?} is already running"
            )));
        }
        if record.is_builtin() {
            self.image()?;
        }
        let available = host::memory()
            .map_err(io_err("Cannot read /proc/meminfo"))?
            .available_mib;
        if record.memory_mib > available {
            return Err(ManagerError::Conflict(format!(
                "Not enough free memory for VM {name:?}: it needs {} MiB, the host has {available} MiB available",
                record.memory_mib
            )));
        }
        // A VM starting fresh carries its address on nic0 (kernel command line).
        record.active_nic = 0;
        record.next_address = None;
        let live = self.launch(&record, LaunchMode::Fresh).await?;
        let pid = live.pid;
        record.state = VmState::Running;
        record.pid = Some(pid);
        self.store.put(&record).map_err(ManagerError::Store)?;
        self.live.lock().await.insert(name.to_string(), live);
        self.supervise(name.to_string(), pid);
        tracing::info!(vm = name, pid, "VM started");
        Ok(self.info(&record).await)
    }

    /// Starts QEMU for `record` (paused, with `-incoming defer` when
    /// `incoming`), wires its NICs and guest channel, and resumes it unless
    /// incoming. On failure QEMU is ended again.
    pub(crate) async fn launch(
        self: &Arc<Self>,
        record: &VmRecord,
        mode: LaunchMode,
    ) -> Result<Live, ManagerError> {
        let incoming = matches!(mode, LaunchMode::Incoming { .. });
        let kernel_files = if record.is_builtin() {
            Some(self.image()?)
        } else {
            None
        };
        let uefi = record.boot.firmware() == Some(edgemig_api::images::Firmware::Uefi);
        if uefi {
            self.check_ovmf()?;
        }
        // The kernel and initramfs reach QEMU as open descriptors: their
        // directory need not be readable by QEMU's user.
        let kernel_fd = PathBuf::from(format!("/proc/self/fd/{}", qemu::spawn::KERNEL_FD));
        let initramfs_fd = PathBuf::from(format!("/proc/self/fd/{}", qemu::spawn::INITRAMFS_FD));
        let boot = match &kernel_files {
            Some(_) => qemu::BootMedia::Kernel {
                kernel: &kernel_fd,
                initramfs: &initramfs_fd,
            },
            None => qemu::BootMedia::Disk {
                ovmf_code: uefi.then_some(self.config.qemu.ovmf_code.as_path()),
            },
        };
        let files = self.files(&record.name);
        for stale in [files.qmp(), files.guest_channel()] {
            let _ = std::fs::remove_file(stale);
        }
        let args = qemu::build_args(&VmLaunch {
            record,
            files: &files,
            boot,
            accel: &self.config.qemu.accel,
            prefix_len: self.config.vm_network.subnet.prefix_len(),
            gateway: self.config.vm_network.gateway(),
            incoming,
        });
        let mut fds = Vec::new();
        for index in 0..2u8 {
            fds.push(
                qemu::tap::open(&record.tap_name(index))
                    .map_err(|e| ManagerError::Unavailable(crate::http::chain(&e)))?,
            );
        }
        if let Some((kernel, initramfs)) = &kernel_files {
            for file in [kernel, initramfs] {
                let f = std::fs::File::open(file)
                    .map_err(io_err(format!("Cannot open {}", file.display())))?;
                fds.push(std::os::fd::OwnedFd::from(f));
            }
        }
        self.give_to_qemu(&files)?;
        let pid = qemu::spawn::spawn(
            &self.config.qemu.binary,
            &args,
            fds,
            self.qemu_user,
            &files.qemu_stderr(),
            &files.qmp(),
        )
        .await
        .map_err(ManagerError::Launch)?;
        match self.finish_start(record, &files, pid, mode).await {
            Ok(live) => Ok(live),
            Err(e) => {
                tracing::warn!(vm = %record.name, pid, error = %e, "start failed; ending QEMU");
                let _ = qemu::kill(pid, libc::SIGKILL);
                qemu::wait_gone(pid, QUIT_TIMEOUT).await;
                Err(e)
            }
        }
    }

    /// Makes the VM's directory and files QEMU's user's (the only files it
    /// may write).
    fn give_to_qemu(&self, files: &VmFiles) -> Result<(), ManagerError> {
        let Some(user) = self.qemu_user else {
            return Ok(());
        };
        let chown = |path: &std::path::Path| {
            std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid)).map_err(io_err(format!(
                "Cannot give {} to QEMU's user",
                path.display()
            )))
        };
        chown(&files.dir)?;
        let entries = std::fs::read_dir(&files.dir)
            .map_err(io_err(format!("Cannot read {}", files.dir.display())))?;
        for entry in entries.flatten() {
            chown(&entry.path())?;
        }
        Ok(())
    }

    /// Connects QMP and the guest channel, wires the NICs and resumes the VM.
    async fn finish_start(
        self: &Arc<Self>,
        record: &VmRecord,
        files: &VmFiles,
        pid: u32,
        mode: LaunchMode,
    ) -> Result<Live, ManagerError> {
        let (qmp, _events) = Qmp::connect(files.qmp()).await.map_err(ManagerError::Qmp)?;
        let active = record.active_nic.min(1);
        let other = 1 - active;
        qmp.set_link(&qemu::nic_id(other), false)
            .await
            .map_err(ManagerError::Qmp)?;
        match mode {
            LaunchMode::Fresh => {
                self.netdev
                    .attach(&record.tap_name(active), Some(self.bridge_index))
                    .await
                    .map_err(ManagerError::Netdev)?;
                self.netdev
                    .attach(&record.tap_name(other), None)
                    .await
                    .map_err(ManagerError::Netdev)?;
            }
            LaunchMode::Incoming {
                tunnel_remote: None,
            } => {
                self.netdev
                    .attach(&record.tap_name(active), Some(self.bridge_index))
                    .await
                    .map_err(ManagerError::Netdev)?;
                self.netdev
                    .attach(&record.tap_name(other), None)
                    .await
                    .map_err(ManagerError::Netdev)?;
            }
            LaunchMode::Incoming {
                tunnel_remote: Some(tunnel_remote),
            } => {
                // The active NIC stays on the old site's network through a
                // tunnel; the other one joins this site's network, carrier
                // off until the handoff.
                let (vxlan, bridge) = record.tunnel_names();
                let tunnel = self
                    .netdev
                    .ensure_tunnel(&vxlan, &bridge, record.vni(), tunnel_remote)
                    .await
                    .map_err(ManagerError::Netdev)?;
                self.netdev
                    .attach(&record.tap_name(active), Some(tunnel))
                    .await
                    .map_err(ManagerError::Netdev)?;
                // The VM's frames that cross the tunnel before the
                // switchover (a broadcast of the copy still running at the
                // source) must not teach this bridge that its MAC is
                // behind the tunnel: frames for it that arrive while it
                // moves (`network::steer_to_tunnel`) are then kept for the
                // TAP, not dropped as going back where they came from.
                self.netdev
                    .pin(&record.tap_name(active), record.mac_bytes(active))
                    .await
                    .map_err(ManagerError::Netdev)?;
                self.netdev
                    .attach(&record.tap_name(other), Some(self.bridge_index))
                    .await
                    .map_err(ManagerError::Netdev)?;
            }
        }
        let guest = GuestChannel::connect(&files.guest_channel())
            .await
            .map_err(ManagerError::Guest)?;
        if mode == LaunchMode::Fresh {
            qmp.cont().await.map_err(ManagerError::Qmp)?;
        }
        self.watch_guest_starts(&record.name, &guest);
        Ok(Live {
            qmp,
            guest,
            pid,
            arrived: Arc::default(),
        })
    }

    /// Watches QEMU `pid` and records a crash when it exits unasked.
    pub(crate) fn supervise(self: &Arc<Self>, name: String, pid: u32) {
        let manager = Arc::downgrade(self);
        tokio::spawn(async move {
            if let Err(error) = host::wait_exit(pid).await {
                tracing::warn!(vm = %name, pid, %error, "cannot watch QEMU");
                return;
            }
            let Some(manager) = manager.upgrade() else {
                return;
            };
            let _op = manager.ops.lock().await;
            let mut live = manager.live.lock().await;
            if live.get(&name).is_some_and(|l| l.pid == pid) {
                live.remove(&name);
                drop(live);
                if let Ok(mut record) = manager.record(&name) {
                    record.state = VmState::Crashed;
                    record.pid = None;
                    let _ = manager.store.put(&record);
                }
                tracing::warn!(vm = %name, pid, "QEMU exited unexpectedly");
            }
        });
    }

    /// Stops a running VM (QEMU quits; the guest gets no shutdown).
    pub async fn stop(&self, name: &str) -> Result<VmInfo, ManagerError> {
        let _op = self.ops.lock().await;
        let mut record = self.record(name)?;
        let live = self.live.lock().await.remove(name);
        if record.state != VmState::Running {
            return Err(ManagerError::Conflict(format!(
                "VM {name:?} is not running ({})",
                record.state
            )));
        }
        if let Some(pid) = record.pid {
            if let Some(live) = &live {
                let _ = tokio::time::timeout(QUIT_TIMEOUT, live.qmp.quit()).await;
            }
            if !qemu::wait_gone(pid, QUIT_TIMEOUT).await {
                tracing::warn!(vm = name, pid, "QEMU ignored quit; killing it");
                let _ = qemu::kill(pid, libc::SIGKILL);
                qemu::wait_gone(pid, QUIT_TIMEOUT).await;
            }
        }
        record.state = VmState::Stopped;
        record.pid = None;
        self.store.put(&record).map_err(ManagerError::Store)?;
        tracing::info!(vm = name, "VM stopped");
        Ok(self.info(&record).await)
    }

    /// Deletes a stopped VM and its files.
    pub async fn delete(&self, name: &str) -> Result<(), ManagerError> {
        let _op = self.ops.lock().await;
        let record = self.record(name)?;
        if record.state == VmState::Running {
            return Err(ManagerError::Conflict(format!(
                "VM {name:?} is running: stop it first"
            )));
        }
        let files = self.files(name);
        if files.dir.exists() {
            std::fs::remove_dir_all(&files.dir)
                .map_err(io_err(format!("Cannot remove {}", files.dir.display())))?;
        }
        self.store.remove(name).map_err(ManagerError::Store)?;
        self.sync_leases();
        tracing::info!(vm = name, "VM deleted");
        Ok(())
    }

    /// Sends one request to the VM's guest agent. Disk requests without a
    /// device go to the data disk: `/dev/vda` in the built-in guest,
    /// `/dev/vdb` in a VM that boots its own root disk (`/dev/vda`).
    pub async fn guest(
        &self,
        name: &str,
        mut request: GuestRequest,
    ) -> Result<GuestReply, ManagerError> {
        let record = self.record(name)?;
        if let GuestRequest::DiskWrite { device, .. } | GuestRequest::DiskVerify { device, .. } =
            &mut request
            && device.is_none()
            && !record.is_builtin()
        {
            if record.disk_mib.is_none() {
                return Err(ManagerError::Invalid(format!(
                    "VM {name:?} has no data disk (its root disk is /dev/vda): name a device or file with --device"
                )));
            }
            *device = Some("/dev/vdb".into());
        }
        let live = self.live.lock().await.get(name).cloned();
        let Some(live) = live.filter(|_| record.state == VmState::Running) else {
            return Err(ManagerError::Conflict(format!(
                "VM {name:?} is not running ({})",
                record.state
            )));
        };
        live.guest
            .wait_ready(GUEST_READY_TIMEOUT)
            .await
            .map_err(ManagerError::Guest)?;
        live.guest
            .request(request, GUEST_REQUEST_TIMEOUT)
            .await
            .map_err(ManagerError::Guest)
    }

    /// TLS for agent-to-agent connections.
    pub fn peer_tls(&self) -> Option<PeerTls> {
        self.peer_tls.clone()
    }

    /// Path names by local address: each migration interface's addresses.
    pub(crate) async fn path_names(&self) -> Vec<(std::net::IpAddr, String)> {
        let mut out = Vec::new();
        for name in &self.config.migration_interfaces {
            for ip in self.netdev.addresses_of(name).await {
                out.push((ip, name.clone()));
            }
        }
        out
    }

    /// Removes a VM that now runs at another site: QEMU quits, its files
    /// and record go.
    pub(crate) async fn remove_migrated(&self, name: &str) {
        let _op = self.ops.lock().await;
        let live = self.live.lock().await.remove(name);
        if let Some(live) = live {
            let _ = tokio::time::timeout(QUIT_TIMEOUT, live.qmp.quit()).await;
            if !qemu::wait_gone(live.pid, QUIT_TIMEOUT).await {
                let _ = qemu::kill(live.pid, libc::SIGKILL);
                qemu::wait_gone(live.pid, QUIT_TIMEOUT).await;
            }
        }
        // A VM that had arrived here through a tunnel (its address is not
        // this site's) leaves that tunnel's devices behind. A VM whose
        // address is this site's keeps the source tunnel, of the same
        // VXLAN name, that the migration opened.
        if let Some(record) = self
            .record(name)
            .ok()
            .filter(|r| !self.config.vm_network.subnet.contains(&r.address))
        {
            let (vxlan, bridge) = record.tunnel_names();
            let _ = self.netdev.delete(&vxlan).await;
            let _ = self.netdev.delete(&bridge).await;
        }
        let _ = std::fs::remove_dir_all(self.files(name).dir);
        if let Err(error) = self.store.remove(name) {
            tracing::error!(vm = name, %error, "cannot remove the migrated VM's record");
        }
        self.sync_leases();
        tracing::info!(vm = name, "VM left this site");
    }

    /// Re-attaches to the VMs whose QEMU still runs (running, paused by a
    /// migration, or arriving), recording what QEMU says: a VM that QEMU
    /// holds paused is recorded paused, never running. VMs whose QEMU is
    /// gone are marked crashed; arriving ones are the migration recovery's
    /// to settle, and those without a migration record (left by an older
    /// agent) are removed.
    async fn reattach_all(self: &Arc<Self>) -> Result<(), ManagerError> {
        let jobs = self.store.jobs().map_err(ManagerError::Store)?;
        for mut record in self.store.all().map_err(ManagerError::Store)? {
            let files = self.files(&record.name);
            if !matches!(
                record.state,
                VmState::Running | VmState::Paused | VmState::Incoming
            ) {
                // A QEMU the record does not know of: an agent ended while
                // it started one (`vm start`). The start never answered,
                // so the VM stays what its record says.
                if let Some(pid) = qemu::running_from_pidfile(&files) {
                    tracing::warn!(vm = %record.name, pid, state = %record.state, "ending a QEMU left by an interrupted start");
                    let _ = qemu::kill(pid, libc::SIGKILL);
                    qemu::wait_gone(pid, QUIT_TIMEOUT).await;
                }
                continue;
            }
            let incoming = record.state == VmState::Incoming;
            let has_job = jobs.iter().any(|j| {
                j.vm == record.name && j.destination().is_some_and(|d| d.ended_at_ms.is_none())
            });
            // No pid yet: the agent ended while it started this QEMU.
            if record.pid.is_none() {
                record.pid = qemu::running_from_pidfile(&files);
            }
            let alive = record
                .pid
                .is_some_and(|pid| host::process_matches(pid, &files.qmp()));
            if incoming && !has_job {
                if let (true, Some(pid)) = (alive, record.pid) {
                    let _ = qemu::kill(pid, libc::SIGKILL);
                    qemu::wait_gone(pid, QUIT_TIMEOUT).await;
                }
                let _ = std::fs::remove_dir_all(&files.dir);
                self.store
                    .remove(&record.name)
                    .map_err(ManagerError::Store)?;
                tracing::warn!(vm = %record.name, "removed an incoming VM without a migration record");
                continue;
            }
            let attached = match (alive, record.pid) {
                (true, Some(pid)) => self.reattach(&record, &files, pid).await,
                _ => Err(ManagerError::Unavailable("QEMU is gone".into())),
            };
            match attached {
                Ok(live) => {
                    let pid = live.pid;
                    if !incoming {
                        let running = live
                            .qmp
                            .query_status()
                            .await
                            .map(|s| s.running)
                            .unwrap_or(false);
                        let state = if running {
                            VmState::Running
                        } else {
                            VmState::Paused
                        };
                        if state != record.state {
                            record.state = state;
                            self.store.put(&record).map_err(ManagerError::Store)?;
                        }
                        self.supervise(record.name.clone(), pid);
                    }
                    self.live.lock().await.insert(record.name.clone(), live);
                    tracing::info!(vm = %record.name, pid, state = %record.state, "re-attached to VM");
                }
                Err(error) if incoming => {
                    tracing::warn!(vm = %record.name, %error, "arriving VM's QEMU is gone");
                }
                Err(error) => {
                    tracing::warn!(vm = %record.name, %error, "VM no longer running; marked crashed");
                    record.state = VmState::Crashed;
                    record.pid = None;
                    self.store.put(&record).map_err(ManagerError::Store)?;
                }
            }
        }
        Ok(())
    }

    async fn reattach(
        self: &Arc<Self>,
        record: &VmRecord,
        files: &VmFiles,
        pid: u32,
    ) -> Result<Live, ManagerError> {
        let (qmp, _events) = Qmp::connect(files.qmp()).await.map_err(ManagerError::Qmp)?;
        let guest = GuestChannel::connect(&files.guest_channel())
            .await
            .map_err(ManagerError::Guest)?;
        self.watch_guest_starts(&record.name, &guest);
        greet(&guest, &record.name);
        Ok(Live {
            qmp,
            guest,
            pid,
            arrived: Arc::default(),
        })
    }
}
