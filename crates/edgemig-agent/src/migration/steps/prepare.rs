//! Step 1, prepare. Source: describe the VM and ask the destination to
//! prepare it. Destination: check room (memory, disk space, the VM's next
//! address), start QEMU with the same device model and `-incoming defer`,
//! create the disks, export them over NBD and listen for the memory stream,
//! on its inter-site address, with TLS admitting only the source site's
//! certificate. Rollback: the source asks the destination to abort; the
//! destination removes QEMU, files and record (`destination::abort`).

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::Method;
use edgemig_api::VmState;
use edgemig_api::images::Firmware;
use edgemig_api::peer::{IncomingBoot, IncomingDisk, IncomingReady, IncomingRequest, IncomingVm};
use edgemig_migration::{DestinationPhase, Phase};
use edgemig_qmp::{KnownEvent, MigrationStatus};

use crate::images::allocated_bytes;
use crate::manager::{LaunchMode, Live, Manager, ManagerError};
use crate::migration::context::{SourceCtx, SourceError, qmp_err};
use crate::migration::id::MigrationId;
use crate::migration::jobs::{DestinationJob, JobRecord, JobSide};
use crate::migration::qmp_steps;
use crate::qemu;
use crate::vm::{self, Boot, VmRecord};

/// Limit of the prepare request (QEMU start, ARP probe, disk creation).
const PREPARE_TIMEOUT: Duration = Duration::from_secs(120);
/// ARP probes sent for a migrating VM's new address, and their spacing.
const ARP_PROBES: u32 = 2;
const ARP_PROBE_INTERVAL: Duration = Duration::from_millis(100);
/// Longest a destination watches for its incoming migration to complete.
const ARRIVAL_WATCH: Duration = Duration::from_secs(24 * 3600);
/// First port of the per-VM migration ports (memory, then NBD); site
/// hosts reserve the range from ephemeral use (`docs/real-hosts.md`).
const PORT_BASE: u16 = edgemig_netns::sysctl::MIGRATION_PORT_FIRST;
/// VMs with a pair of ports of their own.
const PORT_SLOTS: u32 = (edgemig_netns::sysctl::MIGRATION_PORT_LAST as u32
    - edgemig_netns::sysctl::MIGRATION_PORT_FIRST as u32)
    .div_ceil(2);

/// Memory and NBD ports of the VM with local id `id`.
pub fn ports(id: u32) -> (u16, u16) {
    let slot = u16::try_from(id % PORT_SLOTS).unwrap_or(0);
    (PORT_BASE + slot * 2, PORT_BASE + slot * 2 + 1)
}

/// Whether a destination QEMU of version `theirs` (`major.minor.micro`)
/// takes migrations from a source of major version `ours`: migration
/// between versions needs matching machine types, which edgemig does not
/// pin, so it requires the same major version.
pub fn compatible_qemu(theirs: &str, ours: u32) -> bool {
    theirs.split('.').next().and_then(|m| m.parse::<u32>().ok()) == Some(ours)
}

/// Source: the request describing the VM.
pub fn request(ctx: &SourceCtx) -> IncomingRequest {
    let record = &ctx.record;
    let manager = &ctx.manager;
    let files = manager.files(&record.name);
    let disks = record
        .disks()
        .into_iter()
        .map(|d| IncomingDisk {
            role: d.role.as_str().to_string(),
            mib: d.mib,
            top_bytes: allocated_bytes(&files.disk(d.role)),
            base_bytes: d
                .base
                .as_deref()
                .and_then(|b| manager.images.get(b))
                .map_or(0, |b| b.file_bytes),
            base_digest: d.base,
        })
        .collect();
    let boot = match &record.boot {
        Boot::Builtin => IncomingBoot::Builtin,
        Boot::Disk {
            firmware, origin, ..
        } => IncomingBoot::Disk {
            firmware: *firmware,
            origin: origin.clone(),
            efi_vars_bytes: (*firmware == Firmware::Uefi)
                .then(|| std::fs::metadata(files.efi_vars()).map_or(0, |m| m.len())),
        },
    };
    IncomingRequest {
        id: ctx.id.to_string(),
        vm: IncomingVm {
            name: record.name.clone(),
            memory_mib: record.memory_mib,
            vcpus: record.vcpus,
            boot,
            disks,
            mac_seed: record.mac_seed,
            address: format!("{}/{}", record.address, record.prefix_len),
            gateway: record
                .gateway
                .unwrap_or_else(|| manager.config.vm_network.gateway())
                .to_string(),
            active_nic: record.active_nic,
            guest_agent: ctx.live.guest.agent().is_some(),
            mptcp_apps: record.mptcp_apps.clone(),
            follow: record.follow.clone(),
        },
        source_site: manager.config.site.clone(),
        mptcp: ctx.plan.transport == edgemig_migration::Transport::Mptcp,
        tls: !ctx.options.insecure,
        capabilities: ctx.plan.capabilities.clone(),
        parameters: ctx.plan.parameters.clone(),
        handoff: ctx.options.handoff,
    }
}

/// Source: sets up TLS in the source QEMU and asks the destination to
/// prepare; checks the destination's QEMU can take the VM.
pub async fn source(ctx: &SourceCtx) -> Result<IncomingReady, SourceError> {
    let qmp = &ctx.live.qmp;
    if !ctx.options.insecure {
        let dir = ctx.manager.qemu_tls_dir().ok_or_else(|| {
            ManagerError::Unavailable(
                "This site has no TLS files for the data path (use --insecure to migrate without)"
                    .into(),
            )
        })?;
        let _ = qmp.object_del(qmp_steps::TLS_OBJECT).await;
        qmp_steps::add_tls_creds(qmp, &dir.display().to_string(), "client")
            .await
            .map_err(qmp_err(Phase::Prepare))?;
    }
    ctx.check_cancel()?;
    let ready: IncomingReady = ctx
        .peer_call(
            Method::POST,
            "/v1/peer/migrations",
            Some(&request(ctx)),
            PREPARE_TIMEOUT,
        )
        .await?;
    let ours = qmp.version();
    if !compatible_qemu(&ready.qemu_version, ours.major) {
        return Err(SourceError::Migration(format!(
            "QEMU {} at {} cannot take a VM from QEMU {ours} here (same major version needed)",
            ready.qemu_version, ctx.to
        )));
    }
    Ok(ready)
}

/// Source rollback: asks the destination to abort. A first attempt here;
/// when it does not get an answer, more in the background until one comes
/// (a prepare still in flight may only now create the migration there) or
/// [`ABORT_PERSISTENCE`] passed. A destination that never hears it aborts
/// on its own once its incoming migration fails, and refuses a commit
/// forever after.
pub async fn rollback_source(ctx: &SourceCtx) {
    let peer = ctx.peer.clone();
    let id = ctx.id.clone();
    if !abort_once(&peer, &id).await {
        tokio::spawn(async move {
            abort_at_destination(&peer, &id, ABORT_PERSISTENCE).await;
        });
    }
}

/// How long a source keeps asking a destination to abort: longer than a
/// prepare may take there.
pub const ABORT_PERSISTENCE: Duration = Duration::from_secs(150);

/// One abort request; whether the destination answered it (aborted, or
/// refused because it runs the VM).
async fn abort_once(peer: &edgemig_pki::PeerClient, id: &MigrationId) -> bool {
    let abort: Result<edgemig_api::peer::AbortReply, _> = peer
        .request_json(
            Method::POST,
            &format!("/v1/peer/migrations/{id}/abort"),
            None::<&()>,
            super::super::context::PEER_TIMEOUT,
        )
        .await;
    match abort {
        Ok(reply) => {
            tracing::info!(%id, ?reply, "destination answered the abort");
            true
        }
        Err(error) => {
            tracing::warn!(%id, error = %crate::http::chain(&error), "no answer to the abort yet");
            false
        }
    }
}

/// Asks the destination to abort migration `id` until it answers or
/// `within` passed; whether it answered.
pub async fn abort_at_destination(
    peer: &edgemig_pki::PeerClient,
    id: &MigrationId,
    within: Duration,
) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    let mut pause = Duration::from_millis(500);
    loop {
        if abort_once(peer, id).await {
            return true;
        }
        if tokio::time::Instant::now() + pause > deadline {
            return false;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(10));
    }
}

impl Manager {
    /// Destination: prepares migration `req.id` of VM `req.vm` from
    /// `req.source_site` (the caller's certificate names that site).
    ///
    /// `bind`: the local address the source's request arrived at; the
    /// memory and NBD listeners bind it (the inter-site address the source
    /// reaches this site by), or every address when unknown.
    pub async fn prepare_incoming(
        self: &Arc<Self>,
        req: IncomingRequest,
        bind: Option<std::net::IpAddr>,
    ) -> Result<IncomingReady, ManagerError> {
        // Runs to its end even when the caller goes away (the source's
        // agent killed, its request cut): dropped half-way, it would leave
        // a QEMU that no record names. Finished, the incoming VM is
        // registered, and the source's abort (or the incoming watch)
        // removes it.
        let manager = Arc::clone(self);
        tokio::spawn(async move { manager.prepare_incoming_to_end(req, bind).await })
            .await
            .map_err(|e| ManagerError::Unavailable(format!("The preparation stopped: {e}")))?
    }

    async fn prepare_incoming_to_end(
        self: &Arc<Self>,
        req: IncomingRequest,
        bind: Option<std::net::IpAddr>,
    ) -> Result<IncomingReady, ManagerError> {
        let id: MigrationId = req
            .id
            .parse()
            .map_err(|e: crate::migration::id::InvalidId| ManagerError::Invalid(e.to_string()))?;
        if req
            .capabilities
            .iter()
            .any(|(c, on)| c == "postcopy-ram" && *on)
            && let Some(why) = crate::qemu::spawn::userfaultfd_refusal(self.qemu_user)
        {
            return Err(ManagerError::Unavailable(format!(
                "Site {}: {why}",
                self.config.site
            )));
        }
        let _op = self.ops.lock().await;
        if self
            .store
            .job(id.as_str())
            .map_err(ManagerError::Store)?
            .is_some()
        {
            return Err(ManagerError::Conflict(format!(
                "Migration {id} is known here already"
            )));
        }
        let record = self.incoming_record(&req).await?;
        let source_ip = self.peer_ip(&req.source_site)?;
        let job = JobRecord {
            id: id.clone(),
            vm: record.name.clone(),
            started_at_ms: crate::manager::unix_ms(),
            side: JobSide::Destination(DestinationJob {
                from: req.source_site.clone(),
                phase: DestinationPhase::Preparing,
                tunnel_remote: source_ip,
                skip_handoff: if !req.handoff {
                    Some("disabled".into())
                } else if !req.vm.guest_agent {
                    Some("skipped: the VM has no guest agent (its old address stays reachable through the tunnel)".into())
                } else {
                    None
                },
                handoff: None,
                ended_at_ms: None,
            }),
        };
        // Persisted first, the job and then the VM's record (incoming, no
        // pid yet): a crash from here on is cleaned up on restart, which
        // finds a QEMU started meanwhile by the pid file in the VM's
        // directory (`qemu::running_from_pidfile`).
        self.store.put_job(&job).map_err(ManagerError::Store)?;
        let files = self.files(&record.name);
        // The ARP probe of the VM's next address (it waits for answers)
        // runs while QEMU starts; a taken address then stops the QEMU
        // started meanwhile.
        let address_free = async {
            match record.next_address {
                Some(next) => self.check_address_free(&record.name, next).await,
                None => Ok(()),
            }
        };
        let launched = async {
            self.store.put(&record).map_err(ManagerError::Store)?;
            self.create_files(&record, &files).await?;
            self.launch_incoming(&id, &record, &req, source_ip, bind)
                .await
        };
        let prepared = match tokio::join!(launched, address_free) {
            (Ok((_, live)), Err(taken)) => {
                let _ = qemu::kill(live.pid, libc::SIGKILL);
                qemu::wait_gone(live.pid, Duration::from_secs(10)).await;
                Err(taken)
            }
            (launched, _) => launched,
        };
        match prepared {
            Ok((ready, live)) => {
                let mut record = record;
                record.pid = Some(live.pid);
                self.store.put(&record).map_err(ManagerError::Store)?;
                self.live.lock().await.insert(record.name.clone(), live);
                self.set_destination_phase(&id, DestinationPhase::Prepared)?;
                self.sync_leases();
                self.watch_incoming(
                    id.clone(),
                    record.name.clone(),
                    record.pid.unwrap_or_default(),
                );
                tracing::info!(%id, vm = %record.name, from = %req.source_site, memory_port = ready.memory_port, "incoming VM prepared");
                Ok(ready)
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&files.dir);
                let _ = self.netdev.delete(&record.tunnel_names().0).await;
                let _ = self.netdev.delete(&record.tunnel_names().1).await;
                let _ = self.store.remove(&record.name);
                let _ = self.end_destination(&id, DestinationPhase::Aborted);
                Err(e)
            }
        }
    }

    /// Checks an incoming VM and builds its record here.
    async fn incoming_record(&self, req: &IncomingRequest) -> Result<VmRecord, ManagerError> {
        let vm = &req.vm;
        if !vm::is_valid_name(&vm.name) {
            return Err(ManagerError::Invalid(format!(
                "Invalid VM name {:?}",
                vm.name
            )));
        }
        let records = self.store.all().map_err(ManagerError::Store)?;
        if records.iter().any(|r| r.name == vm.name) {
            return Err(ManagerError::Conflict(format!(
                "A VM named {:?} already exists at site {}",
                vm.name, self.config.site
            )));
        }
        if vm.vcpus == 0 || vm.vcpus > 64 || vm.memory_mib < 16 {
            return Err(ManagerError::Invalid(format!(
                "Invalid VM size: {} vCPUs, {} MiB",
                vm.vcpus, vm.memory_mib
            )));
        }
        let available = crate::host::memory()
            .map_err(|source| ManagerError::Io {
                what: "Cannot read /proc/meminfo".into(),
                source,
            })?
            .available_mib;
        if vm.memory_mib > available {
            return Err(ManagerError::Conflict(format!(
                "Site {} has no room for VM {:?}: it needs {} MiB, {available} MiB are available",
                self.config.site, vm.name, vm.memory_mib
            )));
        }
        if req.tls && self.qemu_tls_dir().is_none() {
            return Err(ManagerError::Unavailable(format!(
                "Site {} has no TLS files for the data path",
                self.config.site
            )));
        }
        if !req.tls && !self.config.allow_insecure {
            return Err(ManagerError::Invalid(format!(
                "Site {} does not take migrations without TLS (allow_insecure is off)",
                self.config.site
            )));
        }
        self.check_peer_plan(req)?;
        let address: ipnet::Ipv4Net = vm
            .address
            .parse()
            .map_err(|_| ManagerError::Invalid(format!("Invalid VM address {:?}", vm.address)))?;
        let gateway: Ipv4Addr = vm
            .gateway
            .parse()
            .map_err(|_| ManagerError::Invalid(format!("Invalid VM gateway {:?}", vm.gateway)))?;
        if vm.active_nic > 1 {
            return Err(ManagerError::Invalid(format!(
                "Invalid active NIC {}",
                vm.active_nic
            )));
        }
        let (disk_mib, base_digest, boot, needed) = self.incoming_disks(vm)?;
        if needed > 0 {
            self.check_disk_space(&vm.name, needed)?;
        }
        let net = &self.config.vm_network;
        // A VM whose address is this site's comes back home: no tunnel, no
        // new address.
        let home = net.subnet.contains(&address.addr());
        let next_address = if home {
            None
        } else {
            let taken: Vec<Ipv4Addr> = records
                .iter()
                .flat_map(|r| [Some(r.address), r.next_address])
                .flatten()
                .collect();
            let next =
                vm::allocate_address(net.subnet, net.gateway(), &taken).ok_or_else(|| {
                    ManagerError::Conflict(format!(
                        "No free address left in {} for VM {:?}",
                        net.subnet, vm.name
                    ))
                })?;
            Some(next)
        };
        Ok(VmRecord {
            name: vm.name.clone(),
            id: records.iter().map(|r| r.id).max().map_or(1, |m| m + 1),
            mac_seed: vm.mac_seed,
            memory_mib: vm.memory_mib,
            vcpus: vm.vcpus,
            disk_mib,
            base_digest,
            boot,
            mptcp_apps: vm.mptcp_apps.clone(),
            address: address.addr(),
            prefix_len: address.prefix_len(),
            gateway: Some(gateway),
            active_nic: vm.active_nic,
            next_address,
            follow: vm.follow.clone(),
            state: VmState::Incoming,
            pid: None,
        })
    }

    /// The incoming VM's disks as this site holds them: the data disk's size
    /// and base, the boot, and the bytes they need here.
    #[allow(clippy::type_complexity)]
    fn incoming_disks(
        &self,
        vm: &IncomingVm,
    ) -> Result<(Option<u64>, Option<String>, Boot, u64), ManagerError> {
        let mut needed = 0u64;
        let mut data = (None, None);
        let mut root: Option<(u64, Option<String>)> = None;
        for disk in &vm.disks {
            let held = disk
                .base_digest
                .as_deref()
                .filter(|d| self.images.get(d).is_some())
                .map(str::to_string);
            needed += disk.top_bytes
                + if held.is_some() || disk.base_digest.is_none() {
                    0
                } else {
                    disk.base_bytes
                };
            match disk.role.as_str() {
                "root" if root.is_none() => root = Some((disk.mib, held)),
                "data" if data.0.is_none() => data = (Some(disk.mib), held),
                other => {
                    return Err(ManagerError::Invalid(format!(
                        "Unexpected disk {other:?} of VM {:?}",
                        vm.name
                    )));
                }
            }
        }
        let boot = match (&vm.boot, root) {
            (IncomingBoot::Builtin, None) => Boot::Builtin,
            (
                IncomingBoot::Disk {
                    firmware,
                    origin,
                    efi_vars_bytes,
                },
                Some((root_mib, image)),
            ) => {
                if *firmware == Firmware::Uefi {
                    self.check_ovmf()?;
                    let template =
                        std::fs::metadata(&self.config.qemu.ovmf_vars).map_or(0, |m| m.len());
                    if efi_vars_bytes.is_some_and(|b| b != template) {
                        return Err(ManagerError::Conflict(format!(
                            "The VM's UEFI variable store has {} bytes, this site's OVMF template {template}: install the same OVMF build at both sites",
                            efi_vars_bytes.unwrap_or(0)
                        )));
                    }
                }
                Boot::Disk {
                    firmware: *firmware,
                    root_mib,
                    image,
                    origin: origin.clone(),
                }
            }
            _ => {
                return Err(ManagerError::Invalid(format!(
                    "VM {:?}: boot and root disk do not match",
                    vm.name
                )));
            }
        };
        Ok((data.0, data.1, boot, needed))
    }

    /// Refuses capabilities and parameters this site does not allow from a
    /// peer: only the ones edgemig's plans use, within bounds.
    fn check_peer_plan(&self, req: &IncomingRequest) -> Result<(), ManagerError> {
        const CAPABILITIES: &[&str] = &[
            "multifd",
            "postcopy-ram",
            "auto-converge",
            "events",
            "pause-before-switchover",
            "return-path",
            "zero-blocks",
        ];
        const PARAMETERS: &[&str] = &[
            "multifd-channels",
            "multifd-compression",
            "multifd-zstd-level",
            "max-bandwidth",
            "avail-switchover-bandwidth",
            "downtime-limit",
            "max-postcopy-bandwidth",
            "cpu-throttle-initial",
            "cpu-throttle-increment",
            "cpu-throttle-tailslow",
            "max-cpu-throttle",
            "tls-creds",
            "tls-hostname",
        ];
        if let Some((name, _)) = req
            .capabilities
            .iter()
            .find(|(name, _)| !CAPABILITIES.contains(&name.as_str()))
        {
            return Err(ManagerError::Invalid(format!(
                "Migration capability {name:?} is not allowed from a peer"
            )));
        }
        let params = req.parameters.as_object().cloned().unwrap_or_default();
        for (name, value) in &params {
            if !PARAMETERS.contains(&name.as_str()) {
                return Err(ManagerError::Invalid(format!(
                    "Migration parameter {name:?} is not allowed from a peer"
                )));
            }
            if name == "multifd-channels" && value.as_u64().is_none_or(|n| n == 0 || n > 16) {
                return Err(ManagerError::Invalid(format!(
                    "multifd-channels {value} out of range (1 to 16)"
                )));
            }
        }
        Ok(())
    }

    /// Refuses `address` for VM `vm` when a host on the site's VM network
    /// already answers ARP for it.
    async fn check_address_free(&self, vm: &str, address: Ipv4Addr) -> Result<(), ManagerError> {
        let bridge = self.config.vm_network.bridge.clone();
        let probed = tokio::task::spawn_blocking(move || {
            crate::arp_probe::probe(&bridge, address, ARP_PROBES, ARP_PROBE_INTERVAL)
        })
        .await
        .map_err(|e| ManagerError::Io {
            what: "ARP probe task failed".into(),
            source: std::io::Error::other(e.to_string()),
        })?;
        match probed {
            Ok(None) => Ok(()),
            Ok(Some(owner)) => Err(ManagerError::Conflict(format!(
                "Address {address} for VM {vm:?} is already in use on site {}'s VM network (host {} answers for it)",
                self.config.site, owner.mac
            ))),
            Err(e) => Err(ManagerError::Io {
                what: format!("Cannot probe address {address}"),
                source: std::io::Error::other(crate::http::chain(&e)),
            }),
        }
    }

    /// Starts the incoming QEMU and sets up its listeners.
    async fn launch_incoming(
        self: &Arc<Self>,
        id: &MigrationId,
        record: &VmRecord,
        req: &IncomingRequest,
        source_ip: Ipv4Addr,
        bind: Option<std::net::IpAddr>,
    ) -> Result<(IncomingReady, Live), ManagerError> {
        let tls_dir = req.tls.then(|| self.qemu_tls_dir()).flatten();
        let live = self
            .launch(
                record,
                LaunchMode::Incoming {
                    tunnel_remote: record.next_address.map(|_| source_ip),
                },
            )
            .await?;
        let host = bind
            .filter(|ip| !ip.is_unspecified())
            .map_or_else(|| "0.0.0.0".to_string(), |ip| ip.to_string());
        let nodes: Vec<&str> = record.disks().iter().map(|d| d.role.node()).collect();
        let setup = async {
            let qmp = &live.qmp;
            if let Some(dir) = &tls_dir {
                qmp_steps::add_tls_creds(qmp, &dir.display().to_string(), "server").await?;
                qmp_steps::add_authz(qmp, &req.source_site).await?;
            }
            let (memory_port, nbd_port) = ports(record.id);
            let nbd_port = if nodes.is_empty() {
                None
            } else {
                qmp_steps::export_disks(qmp, &host, nbd_port, req.mptcp, tls_dir.is_some(), &nodes)
                    .await?;
                Some(nbd_port)
            };
            qmp_steps::set_capabilities(qmp, &req.capabilities).await?;
            let mut params = req.parameters.clone();
            if tls_dir.is_some()
                && let Some(map) = params.as_object_mut()
            {
                map.insert("tls-creds".into(), qmp_steps::TLS_OBJECT.into());
                map.insert("tls-authz".into(), qmp_steps::AUTHZ_OBJECT.into());
                map.remove("tls-hostname");
            }
            qmp_steps::set_parameters(qmp, &params).await?;
            watch_arrival(&live);
            qmp_steps::listen_memory(qmp, &host, memory_port, req.mptcp).await?;
            let net = &self.config.vm_network;
            Ok::<_, edgemig_qmp::QmpError>(IncomingReady {
                host: host.clone(),
                memory_port,
                nbd_port,
                disks: record
                    .disks()
                    .iter()
                    .map(|d| edgemig_api::peer::ReadyDisk {
                        role: d.role.as_str().to_string(),
                        export: d.role.node().to_string(),
                        base_present: d.base.is_some(),
                    })
                    .collect(),
                qemu_version: qmp.version().to_string(),
                next_address: record
                    .next_address
                    .map(|a| format!("{a}/{}", net.subnet.prefix_len())),
                next_gateway: Some(net.gateway().to_string()),
            })
        };
        match setup.await {
            Ok(ready) => Ok((ready, live)),
            Err(e) => {
                tracing::warn!(%id, vm = %record.name, error = %e, "incoming QEMU set-up failed");
                let _ = qemu::kill(live.pid, libc::SIGKILL);
                qemu::wait_gone(live.pid, Duration::from_secs(10)).await;
                Err(ManagerError::Qmp(e))
            }
        }
    }
}

/// Notes in `live` when the incoming migration completes (QEMU's event
/// time), in the background until it does or QEMU goes.
fn watch_arrival(live: &Live) {
    let mut events = live.qmp.subscribe();
    let arrived = live.arrived.clone();
    tokio::spawn(async move {
        let completed = events
            .wait_for(
                |e| {
                    matches!(
                        e.known(),
                        KnownEvent::Migration {
                            status: MigrationStatus::Completed | MigrationStatus::PostcopyActive
                        }
                    )
                },
                ARRIVAL_WATCH,
            )
            .await;
        if let Ok(event) = completed {
            let _ = arrived.set(
                event
                    .timestamp
                    .to_system_time()
                    .unwrap_or_else(std::time::SystemTime::now),
            );
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_vm_gets_its_ports_inside_the_reserved_range() {
        use edgemig_netns::sysctl::{MIGRATION_PORT_FIRST, MIGRATION_PORT_LAST};
        assert_eq!(ports(0), (MIGRATION_PORT_FIRST, MIGRATION_PORT_FIRST + 1));
        assert_eq!(ports(4095), (MIGRATION_PORT_LAST - 1, MIGRATION_PORT_LAST));
        assert_eq!(ports(4096), ports(0));
        for id in [1, 17, 2048, 4095, 9999] {
            let (memory, nbd) = ports(id);
            assert!((MIGRATION_PORT_FIRST..=MIGRATION_PORT_LAST).contains(&memory));
            assert_eq!(nbd, memory + 1);
        }
    }

    #[test]
    fn only_the_same_major_qemu_takes_a_migration() {
        assert!(compatible_qemu("10.0.2", 10));
        assert!(!compatible_qemu("9.2.0", 10));
        assert!(!compatible_qemu("garbage", 10));
    }
}
