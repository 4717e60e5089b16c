//! The agent-to-agent protocol (served over mutual TLS on the site's
//! `listen` address): the source agent asks the destination to prepare an
//! incoming VM, then to resume or abort it. Its version travels in the
//! `x-edgemig-protocol` header (`edgemig_pki::PROTOCOL_VERSION`); a peer
//! speaking another major version is refused before anything changes.

use serde::{Deserialize, Serialize};

/// What a VM boots, as the destination must recreate it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum IncomingBoot {
    /// The destination site's built-in guest (kernel + initramfs).
    Builtin,
    /// A root disk (the first of [`IncomingVm::disks`]) under `firmware`.
    Disk {
        /// Firmware.
        firmware: crate::images::Firmware,
        /// Digest of the image the VM was created from.
        origin: String,
        /// Size of the UEFI variable store (must match the destination's
        /// OVMF template), for UEFI VMs.
        #[serde(default)]
        efi_vars_bytes: Option<u64>,
    },
}

/// One disk of an incoming VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncomingDisk {
    /// `root` or `data`.
    pub role: String,
    /// Size the guest sees, in MiB.
    pub mib: u64,
    /// Digest of the image the disk is an overlay on at the source, if any.
    pub base_digest: Option<String>,
    /// Bytes the disk's own layer takes at the source (what a `sync: top`
    /// mirror sends at most).
    pub top_bytes: u64,
    /// Bytes the base image takes (sent too when the destination lacks it).
    pub base_bytes: u64,
}

/// What the destination must recreate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncomingVm {
    /// VM name (kept across the migration).
    pub name: String,
    /// Guest RAM in MiB.
    pub memory_mib: u64,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// What it boots.
    pub boot: IncomingBoot,
    /// Its disks (root first).
    pub disks: Vec<IncomingDisk>,
    /// MAC seed (the guest keeps its MAC addresses).
    pub mac_seed: u32,
    /// The guest's current address with prefix, e.g. `10.10.0.2/24`.
    pub address: String,
    /// Gateway of that address's network (the source site's).
    pub gateway: String,
    /// The NIC carrying the address (0 or 1).
    pub active_nic: u8,
    /// Whether the VM's guest agent answered at the source (without one
    /// the network handoff is skipped: the old address stays reachable
    /// through the tunnel).
    pub guest_agent: bool,
    /// Which of the guest's applications get MPTCP.
    #[serde(default)]
    pub mptcp_apps: edgemig_guest_proto::mptcp_apps::MptcpScope,
    /// The VM's follow policy and its decision state (hold, history), so
    /// the destination's controller carries on where the source left off.
    #[serde(default)]
    pub follow: Option<crate::policy::FollowState>,
}

/// `POST /v1/peer/migrations`: prepare migration `id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncomingRequest {
    /// The migration's id (16 hex digits, chosen by the source).
    pub id: String,
    /// The VM.
    pub vm: IncomingVm,
    /// Site the VM comes from (must be the caller's certificate's site).
    pub source_site: String,
    /// Listen with MPTCP (`"mptcp": true`) on the memory and NBD sockets.
    pub mptcp: bool,
    /// Use TLS (the site certificates) on the memory stream and NBD.
    pub tls: bool,
    /// Migration capabilities to set (QEMU names), same as the source.
    pub capabilities: Vec<(String, bool)>,
    /// Migration parameters to set (QEMU names), same as the source.
    pub parameters: serde_json::Value,
    /// Run the network handoff once the VM runs (else it stays behind the
    /// tunnel).
    #[serde(default = "yes")]
    pub handoff: bool,
}

fn yes() -> bool {
    true
}

/// Where one disk goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadyDisk {
    /// `root` or `data`.
    pub role: String,
    /// NBD export name.
    pub export: String,
    /// The destination holds the disk's base image: mirror only the top
    /// layer (`sync: top`).
    pub base_present: bool,
}

/// Answer to [`IncomingRequest`]: where to send memory and disks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncomingReady {
    /// Address the destination's QEMU listens on (its inter-site address).
    pub host: String,
    /// Port of the memory stream.
    pub memory_port: u16,
    /// Port of the NBD server for the disks, when the VM has any.
    pub nbd_port: Option<u16>,
    /// Where each disk goes.
    pub disks: Vec<ReadyDisk>,
    /// QEMU version at the destination.
    pub qemu_version: String,
    /// The VM's address at the destination (with prefix) and its gateway:
    /// the source stages them in the guest, which configures its handoff
    /// NIC by itself when that NIC's carrier comes up there.
    #[serde(default)]
    pub next_address: Option<String>,
    /// Gateway of `next_address`'s network.
    #[serde(default)]
    pub next_gateway: Option<String>,
}

/// Answer to `POST /v1/peer/migrations/{id}/commit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum CommitReply {
    /// The VM runs at the destination (also when asked again).
    Committed {
        /// When the destination's QEMU resumed the VM (its `RESUME`
        /// event), Unix time in µs.
        resumed_at_unix_us: u64,
        /// When the destination took the (first) commit request in, Unix
        /// µs; 0 when not known.
        #[serde(default)]
        received_at_unix_us: u64,
        /// When the destination's QEMU had the whole state (its incoming
        /// migration `completed`), Unix µs; 0 when not known.
        #[serde(default)]
        arrived_at_unix_us: u64,
    },
    /// The memory has not fully arrived: ask again.
    NotYet,
    /// The destination aborted this migration and will never run the VM.
    Aborted,
}

/// Answer to `POST /v1/peer/migrations/{id}/abort`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum AbortReply {
    /// Aborted (also when asked again): the VM will never run here.
    Aborted,
    /// Refused: the VM runs at the destination.
    Committed,
}

/// Progress of the network handoff at the destination.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandoffStatus {
    /// `pending`, `announced`, `done`, or `not_possible: REASON`.
    pub state: String,
    /// The old address (reachable through the tunnel meanwhile).
    pub old_address: String,
    /// The address at the destination site.
    pub new_address: String,
    /// When the new address was announced, ms after the VM resumed.
    pub announced_ms: Option<u64>,
    /// When the old address was retired, ms after the VM resumed.
    pub retired_ms: Option<u64>,
    /// Connections (subflows) on the new address at retirement.
    pub moved: u32,
    /// Connections still only on the old address at retirement.
    pub on_old: u32,
    /// Times the new address was announced again (MPTCP connections had
    /// not joined it).
    #[serde(default)]
    pub reannounced: u32,
}

/// `GET /v1/peer/migrations/{id}`: the destination's side of a migration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncomingStatus {
    /// The migration's id.
    pub id: String,
    /// VM name.
    pub name: String,
    /// The destination's phase (`preparing`, `prepared`, `committed`,
    /// `running`, `done`, `aborted`).
    pub phase: String,
    /// QEMU's incoming migration status (`active`, `completed`, `failed`,
    /// ...; `none` without QEMU).
    pub migration: String,
    /// The network handoff, once the VM runs.
    #[serde(default)]
    pub handoff: Option<HandoffStatus>,
}

/// `GET /v1/peer/images/{digest}`: what the site holds of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerImageStatus {
    /// The image is in the site's cache.
    pub present: bool,
    /// Bytes received by an earlier push that was cut (where the next one
    /// resumes).
    pub partial_bytes: u64,
    /// Free bytes on the file system of the site's image cache.
    pub free_bytes: u64,
}

/// Query of `PUT /v1/peer/images/{digest}`: the image that follows in the
/// body (see `docs/images.md` for the stream format), from `offset` on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerImageUpload {
    /// Where the body starts in the file (what
    /// [`PeerImageStatus::partial_bytes`] said, or 0).
    pub offset: u64,
    /// Length of the whole file.
    pub file_len: u64,
    /// Name of the image.
    pub name: String,
    /// `raw` or `qcow2`.
    pub format: String,
    /// Firmware of VMs booting it.
    pub firmware: crate::images::Firmware,
    /// Size the guest sees.
    pub virtual_bytes: u64,
}
