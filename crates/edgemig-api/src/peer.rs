//! The agent-to-agent protocol (served over mutual TLS on the site's
//! `listen` address): the source agent asks the destination to prepare an
//! incoming VM, then to resume or abort it. Its version travels in the
//! `x-edgemig-protocol` header (`edgemig_pki::PROTOCOL_VERSION`); a peer
//! speaking another major version is refused before anything changes.

use serde::{Deserialize, Serialize};

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
    /// Data disk size in MiB, if any.
    pub disk_mib: Option<u64>,
    /// MAC seed (the guest keeps its MAC addresses).
    pub mac_seed: u32,
    /// The guest's current address with prefix, e.g. `10.10.0.2/24`.
    pub address: String,
    /// Gateway of that address's network (the source site's).
    pub gateway: String,
    /// The NIC carrying the address (0 or 1).
    pub active_nic: u8,
    /// Digest of the base image under the data disk, if any.
    pub base_digest: Option<String>,
    /// Bytes the data disk's own layer takes at the source (what a
    /// `sync: top` mirror sends at most).
    pub disk_top_bytes: u64,
    /// Bytes the base image takes (sent too when the destination lacks it).
    pub disk_base_bytes: u64,
    /// The VM's follow policy and its decision state (hold, history), so
    /// the destination's controller carries on where the source left off.
    #[serde(default)]
    pub follow: Option<crate::policy::FollowState>,
}

/// `POST /v1/peer/incoming`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncomingRequest {
    /// The VM.
    pub vm: IncomingVm,
    /// Site the VM comes from.
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

/// Answer to [`IncomingRequest`]: where to send memory and disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncomingReady {
    /// Port of the memory stream (on every address of the destination).
    pub memory_port: u16,
    /// Port of the NBD server for the data disk, when the VM has one.
    pub nbd_port: Option<u16>,
    /// QEMU version at the destination.
    pub qemu_version: String,
    /// The destination holds the base image: mirror only the top layer.
    pub base_present: bool,
    /// The VM's address at the destination (with prefix) and its gateway:
    /// the source stages them in the guest, which configures its handoff
    /// NIC by itself when that NIC's carrier comes up there.
    #[serde(default)]
    pub next_address: Option<String>,
    /// Gateway of `next_address`'s network.
    #[serde(default)]
    pub next_gateway: Option<String>,
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
}

/// State of an incoming VM at the destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncomingStatus {
    /// VM name.
    pub name: String,
    /// QEMU's migration status (`active`, `completed`, `failed`, ...).
    pub migration: String,
    /// Whether the VM runs (after resume).
    pub running: bool,
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
