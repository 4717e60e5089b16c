//! What a VM boots and which disks it has: the built-in guest (kernel +
//! initramfs) or a root disk started by the image's own bootloader, plus an
//! optional data disk. Each disk is a qcow2 file in the VM's directory with
//! a fixed QEMU node name, which the command line, the migration's mirror
//! and the destination's NBD exports all use.

use edgemig_api::images::Firmware;
use serde::{Deserialize, Serialize};

/// How a VM boots.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Boot {
    /// The site's built-in guest: kernel and initramfs from the image
    /// directory, the address on the kernel command line.
    #[default]
    Builtin,
    /// A root disk (`root.qcow2`) started by its own bootloader.
    Disk {
        /// Firmware that runs the bootloader.
        firmware: Firmware,
        /// Size of the root disk the guest sees, in MiB.
        root_mib: u64,
        /// Digest of the cached image the root disk is an overlay on at
        /// this site (`None`: the disk stands alone, as after a migration
        /// to a site that did not hold the image).
        image: Option<String>,
        /// Digest of the image the VM was created from (kept across sites,
        /// so a later destination that holds it gets only the overlay).
        origin: String,
    },
}

impl Boot {
    /// The firmware, for VMs that boot from a disk.
    pub fn firmware(&self) -> Option<Firmware> {
        match self {
            Self::Builtin => None,
            Self::Disk { firmware, .. } => Some(*firmware),
        }
    }
}

/// Which of a VM's disks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiskRole {
    /// The disk the VM boots from.
    Root,
    /// The optional data disk.
    Data,
}

impl DiskRole {
    /// QEMU block node name (also the NBD export name at a destination).
    pub fn node(self) -> &'static str {
        match self {
            Self::Root => "root0",
            Self::Data => "data0",
        }
    }

    /// File name in the VM's directory.
    pub fn file_name(self) -> &'static str {
        match self {
            Self::Root => "root.qcow2",
            Self::Data => "data.qcow2",
        }
    }

    /// QEMU device id of the virtio-blk device.
    pub fn device_id(self) -> &'static str {
        match self {
            Self::Root => "vroot0",
            Self::Data => "vdisk0",
        }
    }

    /// `root` or `data`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Root => "root",
            Self::Data => "data",
        }
    }
}

impl std::fmt::Display for DiskRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One disk of a VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmDisk {
    /// Root or data.
    pub role: DiskRole,
    /// Size the guest sees, in MiB.
    pub mib: u64,
    /// Digest of the cached image it is an overlay on here, if any.
    pub base: Option<String>,
}
