//! The destination side of a migration: prepare an incoming VM (QEMU with
//! `-incoming defer`, its disk exported over NBD, the memory stream
//! listened for), then resume it at the source's word, or abort it and
//! leave nothing behind.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use edgemig_api::VmState;
use edgemig_api::peer::{IncomingReady, IncomingRequest, IncomingStatus};

use super::{Manager, ManagerError};
use crate::arp_probe;
use crate::host;
use crate::migration::qmp_steps;
use crate::qemu;
use crate::vm::{self, VmRecord};

/// How long an incoming VM may wait for its memory stream to start.
const INCOMING_START_LIMIT: Duration = Duration::from_secs(3600);

/// ARP probes sent for a migrating VM's new address, and their spacing.
const ARP_PROBES: u32 = 2;
const ARP_PROBE_INTERVAL: Duration = Duration::from_millis(250);

/// First port of the per-VM migration ports (memory, then NBD).
const PORT_BASE: u16 = 49152;

/// Memory and NBD ports of the VM with local id `id`.
pub fn ports(id: u32) -> (u16, u16) {
    let slot = u16::try_from(id % 4096).unwrap_or(0);
    (PORT_BASE + slot * 2, PORT_BASE + slot * 2 + 1)
}

impl Manager {
    /// Prepares VM `req.vm` to arrive from `req.source_site`.
    pub async fn prepare_incoming(
        self: &Arc<Self>,
        req: IncomingRequest,
    ) -> Result<IncomingReady, ManagerError> {
        let _op = self.ops.lock().await;
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
        let available = host::memory()
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
        let tls_dir = if req.tls {
            Some(self.qemu_tls_dir().ok_or_else(|| {
                ManagerError::Unavailable(format!(
                    "Site {} has no TLS files for the data path",
                    self.config.site
                ))
            })?)
        } else {
            None
        };
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
        let source_ip = self.peer_ip(&req.source_site)?;
        let net = &self.config.vm_network;
        let taken: Vec<Ipv4Addr> = records
            .iter()
            .flat_map(|r| [Some(r.address), r.next_address])
            .flatten()
            .collect();
        let next_address =
            vm::allocate_address(net.subnet, net.gateway(), &taken).ok_or_else(|| {
                ManagerError::Conflict(format!(
                    "No free address left in {} for VM {:?}",
                    net.subnet, vm.name
                ))
            })?;
        // A base image this site holds under the same digest lets the disk
        // arrive as its top layer only.
        let base_present = vm
            .base_digest
            .as_deref()
            .is_some_and(|d| self.images.get(d).is_some());
        if vm.disk_mib.is_some() {
            let needed = vm.disk_top_bytes
                + if base_present || vm.base_digest.is_none() {
                    0
                } else {
                    vm.disk_base_bytes
                };
            self.check_disk_space(&vm.name, needed)?;
        }
        self.check_address_free(&vm.name, next_address).await?;
        let record = VmRecord {
            name: vm.name.clone(),
            id: records.iter().map(|r| r.id).max().map_or(1, |m| m + 1),
            mac_seed: vm.mac_seed,
            memory_mib: vm.memory_mib,
            vcpus: vm.vcpus,
            disk_mib: vm.disk_mib,
            base_digest: vm.base_digest.clone().filter(|_| base_present),
            boot: crate::vm::Boot::Builtin,
            address: address.addr(),
            prefix_len: address.prefix_len(),
            gateway: Some(gateway),
            active_nic: vm.active_nic,
            next_address: Some(next_address),
            follow: vm.follow.clone(),
            state: VmState::Incoming,
            pid: None,
        };
        let files = self.files(&record.name);
        self.create_files(&record, &files).await?;
        let prepared = self
            .launch_incoming(&record, &req, tls_dir.as_deref(), source_ip)
            .await;
        match prepared {
            Ok((ready, live)) => {
                let mut record = record;
                record.pid = Some(live.pid);
                self.store.put(&record).map_err(ManagerError::Store)?;
                self.live.lock().await.insert(record.name.clone(), live);
                self.tunnel_sources
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(record.name.clone(), req.source_site.clone());
                if !req.handoff {
                    self.skip_handoff
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .insert(record.name.clone());
                }
                self.watch_incoming(record.name.clone(), record.pid.unwrap_or_default());
                tracing::info!(vm = %record.name, from = %req.source_site, memory_port = ready.memory_port, "incoming VM prepared");
                Ok(ready)
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&files.dir);
                Err(e)
            }
        }
    }

    async fn launch_incoming(
        self: &Arc<Self>,
        record: &VmRecord,
        req: &IncomingRequest,
        tls_dir: Option<&std::path::Path>,
        source_ip: Ipv4Addr,
    ) -> Result<(IncomingReady, super::Live), ManagerError> {
        let live = self
            .launch(
                record,
                super::LaunchMode::Incoming {
                    tunnel_remote: source_ip,
                },
            )
            .await?;
        let next_prefix = self.config.vm_network.subnet.prefix_len();
        let next_gateway = self.config.vm_network.gateway();
        let setup = async {
            let qmp = &live.qmp;
            if let Some(dir) = tls_dir {
                qmp_steps::add_tls_creds(qmp, &dir.display().to_string(), "server").await?;
            }
            let (memory_port, nbd_port) = ports(record.id);
            let nbd_port = if record.disk_mib.is_some() {
                qmp_steps::export_disk(qmp, nbd_port, req.mptcp, tls_dir.is_some()).await?;
                Some(nbd_port)
            } else {
                None
            };
            qmp_steps::set_capabilities(qmp, &req.capabilities).await?;
            let mut params = req.parameters.clone();
            if tls_dir.is_some()
                && let Some(map) = params.as_object_mut()
            {
                map.insert("tls-creds".into(), qmp_steps::TLS_OBJECT.into());
            }
            qmp_steps::set_parameters(qmp, &params).await?;
            qmp_steps::listen_memory(qmp, memory_port, req.mptcp).await?;
            Ok::<_, edgemig_qmp::QmpError>(IncomingReady {
                memory_port,
                nbd_port,
                qemu_version: qmp.version().to_string(),
                base_present: record.base_digest.is_some(),
                next_address: record.next_address.map(|a| format!("{a}/{next_prefix}")),
                next_gateway: Some(next_gateway.to_string()),
            })
        };
        match setup.await {
            Ok(ready) => Ok((ready, live)),
            Err(e) => {
                let _ = qemu::kill(live.pid, libc::SIGKILL);
                qemu::wait_gone(live.pid, Duration::from_secs(10)).await;
                Err(ManagerError::Qmp(e))
            }
        }
    }

    /// Refuses `address` for VM `vm` when a host on the site's VM network
    /// already answers ARP for it.
    async fn check_address_free(&self, vm: &str, address: Ipv4Addr) -> Result<(), ManagerError> {
        let bridge = self.config.vm_network.bridge.clone();
        let probed = tokio::task::spawn_blocking(move || {
            arp_probe::probe(&bridge, address, ARP_PROBES, ARP_PROBE_INTERVAL)
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

    /// Removes an incoming VM whose source gave up without telling us: when
    /// its migration failed here, or never started within
    /// [`INCOMING_START_LIMIT`].
    fn watch_incoming(self: &Arc<Self>, name: String, pid: u32) {
        let manager = Arc::downgrade(self);
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                let Some(m) = manager.upgrade() else { return };
                let live = m.live.lock().await.get(&name).cloned();
                let still_incoming = m
                    .record(&name)
                    .is_ok_and(|r| r.state == VmState::Incoming && r.pid == Some(pid));
                let Some(live) = live.filter(|_| still_incoming) else {
                    return;
                };
                let status = live
                    .qmp
                    .query_migrate()
                    .await
                    .ok()
                    .and_then(|i| i.status)
                    .map(|s| s.as_str().to_string());
                let stale = live.qmp.is_closed()
                    || match status.as_deref() {
                        Some("failed") | Some("cancelled") => true,
                        None | Some("none") | Some("setup") => {
                            started.elapsed() > INCOMING_START_LIMIT
                        }
                        _ => false,
                    };
                if stale {
                    tracing::warn!(vm = %name, ?status, "incoming migration abandoned by its source; cleaning up");
                    let _ = m.abort_incoming(&name).await;
                    return;
                }
            }
        });
    }

    /// Where the QEMU TLS credentials of this site are, if it has TLS files.
    pub(crate) fn qemu_tls_dir(&self) -> Option<std::path::PathBuf> {
        let dir = self.config.state_dir.join("qemu-tls");
        dir.join("ca-cert.pem").is_file().then_some(dir)
    }

    fn incoming_live(
        &self,
        name: &str,
        live: Option<super::Live>,
    ) -> Result<(VmRecord, super::Live), ManagerError> {
        let record = self.record(name)?;
        match live {
            Some(l) if record.state == VmState::Incoming => Ok((record, l)),
            _ => Err(ManagerError::Conflict(format!(
                "VM {name:?} is not an incoming VM here"
            ))),
        }
    }

    /// Status of an incoming VM.
    pub async fn incoming_status(&self, name: &str) -> Result<IncomingStatus, ManagerError> {
        let live = self.live.lock().await.get(name).cloned();
        let record = self.record(name)?;
        let migration = match &live {
            Some(l) => l
                .qmp
                .query_migrate()
                .await
                .map_err(ManagerError::Qmp)?
                .status
                .map_or_else(|| "none".to_string(), |s| s.as_str().to_string()),
            None => "none".into(),
        };
        Ok(IncomingStatus {
            name: name.to_string(),
            migration,
            running: record.state == VmState::Running,
            handoff: self.handoff_status(name),
        })
    }

    /// Resumes an incoming VM whose memory arrived: the disk export closes,
    /// the VM runs here from now on.
    pub async fn resume_incoming(
        self: &Arc<Self>,
        name: &str,
    ) -> Result<IncomingStatus, ManagerError> {
        let _op = self.ops.lock().await;
        let live = self.live.lock().await.get(name).cloned();
        let (mut record, live) = self.incoming_live(name, live)?;
        // The destination finishes loading a moment after the source
        // reports completion: wait for it (bounded).
        let mut status = String::new();
        for _ in 0..300 {
            let info = live.qmp.query_migrate().await.map_err(ManagerError::Qmp)?;
            status = info
                .status
                .map(|s| s.as_str().to_string())
                .unwrap_or_default();
            if status != "active" && status != "device" && status != "setup" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if status != "completed" {
            return Err(ManagerError::Conflict(format!(
                "Memory of VM {name:?} has not fully arrived (migration {status})"
            )));
        }
        if record.disk_mib.is_some() {
            qmp_steps::unexport_disk(&live.qmp)
                .await
                .map_err(ManagerError::Qmp)?;
        }
        live.qmp.cont().await.map_err(ManagerError::Qmp)?;
        record.state = VmState::Running;
        self.store.put(&record).map_err(ManagerError::Store)?;
        self.supervise(name.to_string(), live.pid);
        super::greet(&live.guest, name);
        self.start_handoff(name, &live, &record);
        tracing::info!(vm = name, pid = live.pid, "migrated VM runs here");
        Ok(IncomingStatus {
            name: name.to_string(),
            migration: status,
            running: true,
            handoff: self.handoff_status(name),
        })
    }

    /// Aborts an incoming VM: QEMU ends, its files and record go.
    pub async fn abort_incoming(&self, name: &str) -> Result<(), ManagerError> {
        let _op = self.ops.lock().await;
        let live = self.live.lock().await.remove(name);
        let record = self.record(name)?;
        if record.state != VmState::Incoming {
            return Err(ManagerError::Conflict(format!(
                "VM {name:?} is not an incoming VM here"
            )));
        }
        if let Some(pid) = live.map(|l| l.pid).or(record.pid) {
            let _ = qemu::kill(pid, libc::SIGKILL);
            qemu::wait_gone(pid, Duration::from_secs(10)).await;
        }
        let (vxlan, bridge) = record.tunnel_names();
        let _ = self.netdev.delete(&vxlan).await;
        let _ = self.netdev.delete(&bridge).await;
        let files = self.files(name);
        let _ = std::fs::remove_dir_all(&files.dir);
        self.store.remove(name).map_err(ManagerError::Store)?;
        tracing::info!(vm = name, "incoming VM aborted and removed");
        Ok(())
    }
}
