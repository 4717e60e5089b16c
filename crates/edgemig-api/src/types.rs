//! Request and response bodies of the agent API.

use std::fmt;

use edgemig_guest_proto::AgentInfo;
use serde::{Deserialize, Serialize};

/// What the agent says about its site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteInfo {
    /// Site name from the agent's config.
    pub site: String,
    /// Version of `edgemigd`.
    pub version: String,
    /// Version of the QEMU binary the agent uses (`major.minor.micro`).
    pub qemu_version: String,
    /// Subnet of the site's VM network.
    pub vm_subnet: String,
    /// Number of VMs the agent knows.
    pub vms: usize,
}

/// Body of `POST /v1/vms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmCreate {
    /// Unique name of the VM at this site: 1–32 of `[a-z0-9-]`, starting with a letter.
    pub name: String,
    /// Guest RAM in MiB.
    pub memory_mib: u64,
    /// Number of virtual CPUs.
    #[serde(default = "default_vcpus")]
    pub vcpus: u32,
    /// Size of an optional data disk (virtio-blk, qcow2) in MiB.
    #[serde(default)]
    pub disk_mib: Option<u64>,
    /// Base image (digest, or name in the site's image cache) the data disk
    /// is an overlay on. Without `disk_mib` the disk takes the base's size.
    #[serde(default)]
    pub base_image: Option<String>,
    /// Image (digest or name in the site's cache) the VM boots from: its
    /// root disk is a qcow2 overlay on it, started by the image's own
    /// bootloader under the image's firmware. Without it the VM boots the
    /// site's built-in guest (kernel + initramfs with the guest agent).
    #[serde(default)]
    pub image: Option<String>,
    /// Firmware for a VM booting `image`, instead of the image's own
    /// (`bios` or `uefi`).
    #[serde(default)]
    pub firmware: Option<crate::images::Firmware>,
    /// Which of the guest's applications get MPTCP without being changed
    /// (`"all"`, `"off"`, or `{"units": [...]}`; docs/guest-agent.md).
    /// Default off.
    #[serde(default)]
    pub mptcp_apps: edgemig_guest_proto::mptcp_apps::MptcpScope,
}

impl VmCreate {
    /// A VM of the site's built-in guest: one vCPU, no disks, no
    /// application MPTCP; other fields by struct update.
    pub fn builtin(name: &str, memory_mib: u64) -> Self {
        VmCreate {
            name: name.into(),
            memory_mib,
            vcpus: default_vcpus(),
            disk_mib: None,
            base_image: None,
            image: None,
            firmware: None,
            mptcp_apps: Default::default(),
        }
    }
}

fn default_vcpus() -> u32 {
    1
}

/// Lifecycle state of a VM as the agent sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VmState {
    /// Defined, never started or stopped cleanly.
    Stopped,
    /// QEMU is running (the guest may still be booting).
    Running,
    /// QEMU exited without being asked to.
    Crashed,
    /// Prepared as a migration destination; runs once the source hands over.
    Incoming,
    /// QEMU runs but the VM is paused by a migration's switchover (also
    /// while the outcome is unknown and the source asks the destination).
    Paused,
}

impl fmt::Display for VmState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Stopped => "stopped",
            Self::Running => "running",
            Self::Crashed => "crashed",
            Self::Incoming => "incoming",
            Self::Paused => "paused",
        })
    }
}

/// One virtual NIC of a VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicInfo {
    /// `nic0` (site VM network) or `nic1` (handoff NIC, carrier off at start).
    pub name: String,
    /// MAC address.
    pub mac: String,
    /// Host TAP device backing it.
    pub tap: String,
    /// Bridge the TAP is attached to, if any.
    pub bridge: Option<String>,
    /// Whether the guest sees a carrier.
    pub link_up: bool,
    /// Guest address with prefix length, if one is assigned.
    pub address: Option<String>,
}

/// Everything the agent knows about one VM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmInfo {
    /// VM name.
    pub name: String,
    /// Lifecycle state.
    pub state: VmState,
    /// Guest RAM in MiB.
    pub memory_mib: u64,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// Data disk size in MiB, if the VM has one.
    pub disk_mib: Option<u64>,
    /// Digest of the base image under the data disk, if any.
    #[serde(default)]
    pub base_image: Option<String>,
    /// Digest of the image the VM boots from (`None`: the built-in guest).
    #[serde(default)]
    pub image: Option<String>,
    /// Firmware of a VM booting from an image.
    #[serde(default)]
    pub firmware: Option<crate::images::Firmware>,
    /// Which of the guest's applications get MPTCP.
    #[serde(default)]
    pub mptcp_apps: edgemig_guest_proto::mptcp_apps::MptcpScope,
    /// QEMU process id while running.
    pub pid: Option<u32>,
    /// The VM's NICs.
    pub nics: Vec<NicInfo>,
    /// The guest agent, once it reported ready in this run of QEMU.
    pub guest: Option<AgentInfo>,
    /// The VM's placement policy, if one was set.
    #[serde(default)]
    pub policy: Option<crate::policy::PolicyView>,
    /// Path of the serial console log.
    pub serial_log: String,
    /// Path of the QMP socket.
    pub qmp_socket: String,
}

/// The error body every failing route returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiErrorBody {
    /// Machine-readable kind.
    pub code: ErrorCode,
    /// One line for humans, with the causes joined by ": ".
    pub message: String,
}

/// Kinds of API errors; each maps to one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: the request is malformed or asks for something impossible.
    BadRequest,
    /// 403: the caller may not do this (another site's migration).
    Forbidden,
    /// 404: no such VM (or route).
    NotFound,
    /// 409: the request conflicts with the current state.
    Conflict,
    /// 503: a needed resource (guest agent, QEMU) is not available now.
    Unavailable,
    /// 500: the agent failed.
    Internal,
}

impl ErrorCode {
    /// The HTTP status code for this kind.
    pub fn status(self) -> u16 {
        match self {
            Self::BadRequest => 400,
            Self::Forbidden => 403,
            Self::NotFound => 404,
            Self::Conflict => 409,
            Self::Unavailable => 503,
            Self::Internal => 500,
        }
    }
}
