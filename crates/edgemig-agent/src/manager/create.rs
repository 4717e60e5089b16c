//! Defining a VM: checking the request, choosing its address and MACs, and
//! creating its files: a qcow2 overlay per disk (the root disk on the
//! image it boots, the data disk on its base image, if any) and, for UEFI
//! VMs, its own copy of the OVMF variable store.

use edgemig_api::images::Firmware;
use edgemig_api::{VmCreate, VmInfo, VmState};

use super::{Manager, ManagerError, io_err};
use crate::host;
use crate::qemu::VmFiles;
use crate::vm::{self, Boot, VmRecord};

/// Smallest guest RAM accepted.
const MIN_MEMORY_MIB: u64 = 16;
/// Most vCPUs accepted.
const MAX_VCPUS: u32 = 64;

fn mib_of(bytes: u64) -> u64 {
    bytes.div_ceil(1 << 20)
}

impl Manager {
    /// Defines a new VM and creates its disks.
    pub async fn create(&self, spec: VmCreate) -> Result<VmInfo, ManagerError> {
        let _op = self.ops.lock().await;
        if !vm::is_valid_name(&spec.name) {
            return Err(ManagerError::Invalid(format!(
                "Invalid VM name {:?}: use 1-32 of [a-z0-9-], starting with a letter",
                spec.name
            )));
        }
        let total = host::memory()
            .map_err(io_err("Cannot read /proc/meminfo"))?
            .total_mib;
        if spec.memory_mib > total {
            return Err(ManagerError::Invalid(format!(
                "Memory {} MiB is more than this host has ({total} MiB)",
                spec.memory_mib
            )));
        }
        if spec.memory_mib < MIN_MEMORY_MIB {
            return Err(ManagerError::Invalid(format!(
                "Memory {} MiB is too small (at least {MIN_MEMORY_MIB} MiB)",
                spec.memory_mib
            )));
        }
        if spec.vcpus == 0 || spec.vcpus > MAX_VCPUS {
            return Err(ManagerError::Invalid(format!(
                "vcpus {} out of range (1 to {MAX_VCPUS})",
                spec.vcpus
            )));
        }
        if spec.disk_mib == Some(0) {
            return Err(ManagerError::Invalid(
                "Disk size must be at least 1 MiB".into(),
            ));
        }
        let records = self.store.all().map_err(ManagerError::Store)?;
        if records.iter().any(|r| r.name == spec.name) {
            return Err(ManagerError::Conflict(format!(
                "A VM named {:?} already exists",
                spec.name
            )));
        }
        let boot = match &spec.image {
            Some(image) => {
                let cached = self.images.resolve(image).map_err(ManagerError::from)?;
                let firmware = spec.firmware.unwrap_or(cached.meta.firmware);
                if firmware == Firmware::Uefi {
                    self.check_ovmf()?;
                }
                Boot::Disk {
                    firmware,
                    root_mib: mib_of(cached.meta.virtual_bytes),
                    image: Some(cached.meta.digest.clone()),
                    origin: cached.meta.digest,
                }
            }
            None if spec.firmware.is_some() => {
                return Err(ManagerError::Invalid(
                    "--firmware needs --image: the built-in guest boots without firmware".into(),
                ));
            }
            None => Boot::Builtin,
        };
        let base = match &spec.base_image {
            Some(image) => Some(self.images.resolve(image).map_err(ManagerError::from)?),
            None => None,
        };
        let disk_mib = match (&base, spec.disk_mib) {
            (Some(b), None) => Some(mib_of(b.meta.virtual_bytes)),
            (Some(b), Some(mib)) if mib << 20 < b.meta.virtual_bytes => {
                return Err(ManagerError::Invalid(format!(
                    "Disk size {mib} MiB is smaller than base image {} ({} MiB)",
                    b.meta.name,
                    mib_of(b.meta.virtual_bytes)
                )));
            }
            (_, size) => size,
        };
        let net = &self.config.vm_network;
        let taken: Vec<_> = records
            .iter()
            .flat_map(|r| [Some(r.address), r.next_address])
            .flatten()
            .collect();
        let address = vm::allocate_address(net.subnet, net.gateway(), &taken).ok_or_else(|| {
            ManagerError::Conflict(format!("No free address left in {}", net.subnet))
        })?;
        let id = records.iter().map(|r| r.id).max().map_or(1, |m| m + 1);
        let record = VmRecord {
            name: spec.name,
            id,
            mac_seed: vm::random_mac_seed(),
            memory_mib: spec.memory_mib,
            vcpus: spec.vcpus,
            disk_mib,
            base_digest: base.map(|b| b.meta.digest),
            boot,
            mptcp_apps: spec.mptcp_apps,
            address,
            prefix_len: net.subnet.prefix_len(),
            gateway: Some(net.gateway()),
            active_nic: 0,
            next_address: None,
            follow: None,
            state: VmState::Stopped,
            pid: None,
        };
        let files = self.files(&record.name);
        let created = self.create_files(&record, &files).await;
        if let Err(e) = created.and_then(|()| self.store.put(&record).map_err(ManagerError::Store))
        {
            let _ = std::fs::remove_dir_all(&files.dir);
            return Err(e);
        }
        self.sync_leases();
        tracing::info!(vm = %record.name, memory_mib = record.memory_mib, %address, boot = ?record.boot, "VM created");
        Ok(self.info(&record).await)
    }

    /// Refuses UEFI VMs when OVMF's files are missing.
    pub(crate) fn check_ovmf(&self) -> Result<(), ManagerError> {
        let q = &self.config.qemu;
        for file in [&q.ovmf_code, &q.ovmf_vars] {
            if !file.is_file() {
                return Err(ManagerError::Unavailable(format!(
                    "UEFI firmware file {} is missing (Debian package ovmf, or [qemu] ovmf_code/ovmf_vars in the site config)",
                    file.display()
                )));
            }
        }
        Ok(())
    }

    /// Creates the VM's directory and disks (an empty directory first: a
    /// left-over one is cleared).
    pub(crate) async fn create_files(
        &self,
        record: &VmRecord,
        files: &VmFiles,
    ) -> Result<(), ManagerError> {
        if files.dir.exists() {
            std::fs::remove_dir_all(&files.dir)
                .map_err(io_err(format!("Cannot clear {}", files.dir.display())))?;
        }
        std::fs::create_dir_all(&files.dir)
            .map_err(io_err(format!("Cannot create {}", files.dir.display())))?;
        for disk in record.disks() {
            let mut create = tokio::process::Command::new("qemu-img");
            create.args(["create", "-q", "-f", "qcow2"]);
            if let Some(digest) = &disk.base {
                let base = self.images.get(digest).ok_or_else(|| {
                    ManagerError::Missing(format!("Image {digest} is not in this site's cache"))
                })?;
                create
                    .arg("-b")
                    .arg(&base.path)
                    .args(["-F", &base.meta.format]);
            }
            let out = create
                .arg(files.disk(disk.role))
                .arg(format!("{}M", disk.mib))
                .output()
                .await
                .map_err(io_err("Cannot run qemu-img (package qemu-utils)"))?;
            if !out.status.success() {
                return Err(ManagerError::Io {
                    what: format!("qemu-img create of the {} disk failed", disk.role),
                    source: std::io::Error::other(
                        String::from_utf8_lossy(&out.stderr).trim().to_string(),
                    ),
                });
            }
        }
        if record.boot.firmware() == Some(Firmware::Uefi) {
            self.check_ovmf()?;
            std::fs::copy(&self.config.qemu.ovmf_vars, files.efi_vars()).map_err(io_err(
                format!(
                    "Cannot copy the UEFI variable store {}",
                    self.config.qemu.ovmf_vars.display()
                ),
            ))?;
        }
        Ok(())
    }
}
