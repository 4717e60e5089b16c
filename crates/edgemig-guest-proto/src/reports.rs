//! The reports inside replies, shared by every protocol version: NIC
//! changes and plans, connections, memory and disk workloads.

use serde::{Deserialize, Serialize};

use crate::MacAddr;

/// State of a staged NIC plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NicPlanState {
    /// Waiting for the NIC's carrier.
    Pending,
    /// Applied (see [`NicPlanStatus::applied_ms`]).
    Applied,
    /// Applying failed; the text says why. Not retried automatically.
    Failed(String),
}

/// A staged NIC plan and what became of it. Times are guest uptimes in ms,
/// the clock of [`crate::AgentInfo::boot_ms`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicPlanStatus {
    /// Interface: the guest's real name for it (protocol 3 and later, also
    /// when the plan named it by MAC).
    pub nic: String,
    /// Its MAC address (protocol 3 and later; absent from older guests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<MacAddr>,
    /// Planned address with prefix.
    pub address: String,
    /// Planned gateway.
    pub gateway: String,
    /// Where the plan stands.
    pub state: NicPlanState,
    /// When the plan was staged.
    pub staged_ms: u64,
    /// When the plan was applied (or its application failed).
    pub applied_ms: Option<u64>,
    /// How long before this answer the plan was applied (or failed): the
    /// host subtracts it from its own receive time to place the event on
    /// its clock.
    pub applied_ago_ms: Option<u64>,
    /// What applying did (as a [`crate::GuestReply::Nic`] of `NicUp` reports it).
    pub report: Option<NicReport>,
}

/// Every staged NIC plan, sorted by interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicPlansReport {
    /// The plans.
    pub plans: Vec<NicPlanStatus>,
}

/// What a NIC change did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicReport {
    /// Interface: the guest's real name for it (protocol 3 and later, also
    /// when the request named it by MAC).
    pub nic: String,
    /// Its MAC address (protocol 3 and later; absent from older guests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<MacAddr>,
    /// Addresses it has now (empty after retirement).
    pub addresses: Vec<String>,
    /// MPTCP endpoint ids added (up) or removed (retire).
    pub endpoints: Vec<u8>,
}

/// The guest's established TCP connections, listed through sock_diag
/// (`NETLINK_SOCK_DIAG`, what `ss -tiM` uses). Loopback, listening and
/// not-established sockets are left out.
///
/// To decide when an old address can be retired, the host counts the
/// connections still on the old address only: those whose
/// [`ConnectionInfo::local_addresses`] is exactly `[old]`, which
/// [`NetReport::sole_address`] gives for every address (uncapped). A
/// connection that also has a subflow on the new address has moved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetReport {
    /// `(local address, established TCP sockets)`, sorted by address; every
    /// MPTCP subflow counts one (the protocol-1 report).
    pub by_address: Vec<(String, u32)>,
    /// One entry per connection (an MPTCP connection with all its subflows,
    /// or a plain TCP connection), most [`ConnectionInfo::bytes`] first,
    /// at most [`MAX_CONNECTIONS`] of them. Both ends of a connection
    /// between two local addresses are listed.
    #[serde(default)]
    pub connections: Vec<ConnectionInfo>,
    /// Number of connections before the cap of `connections`.
    #[serde(default)]
    pub connections_total: u32,
    /// `(local address, connections whose every established subflow uses
    /// this one address)`, sorted by address, over all connections (not
    /// capped): for the old address, the connections that have not moved.
    #[serde(default)]
    pub sole_address: Vec<(String, u32)>,
    /// The kernel's MPTCP counters that are not zero (`MPTcpExt*` of
    /// `/proc/net/netstat`, without the prefix): joins, announcements,
    /// and why subflows were refused or closed.
    #[serde(default)]
    pub mptcp_counters: Vec<(String, u64)>,
}

/// Most connections a [`NetReport`] lists.
pub const MAX_CONNECTIONS: usize = 256;

/// One client connection of the guest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectionInfo {
    /// An MPTCP connection (its subflows grouped by token); false for
    /// plain TCP.
    pub mptcp: bool,
    /// The peer's IP address on the initial subflow (MP_CAPABLE), or on the
    /// first subflow listed once the initial one is gone.
    pub remote: String,
    /// The distinct local IP addresses of its established subflows, sorted.
    pub local_addresses: Vec<String>,
    /// Established subflows (1 for plain TCP).
    pub subflows: u32,
    /// The smallest smoothed RTT among its established subflows, in ms
    /// (what the peer gets on its best path); 0 when no subflow has an RTT
    /// sample yet.
    pub rtt_ms: f64,
    /// `bytes_acked + bytes_received` summed over its subflows: a weight of
    /// how much this peer uses the VM.
    pub bytes: u64,
}

/// What a memory fill holds now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FillReport {
    /// MiB of random bytes.
    pub random_mib: u32,
    /// MiB of text.
    pub text_mib: u32,
}

/// State of the memory writer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemStatus {
    /// Working-set size in MiB (0 when never started).
    pub mib: u32,
    /// Whether it is writing now.
    pub running: bool,
    /// Completed passes over the whole working set.
    pub passes: u64,
    /// Pages written since start.
    pub pages_written: u64,
    /// Configured rate in MiB/s; `None` is as fast as possible.
    pub rate_mib_s: Option<u32>,
}

/// Result of checking every page of the working set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemVerifyReport {
    /// Pages checked.
    pub pages: u64,
    /// Pages whose content differs from the expected pattern.
    pub bad_pages: u64,
    /// Index of the first bad page, if any.
    pub first_bad_page: Option<u64>,
}

/// Result of a disk write or verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskReport {
    /// Device used.
    pub device: String,
    /// Bytes written or compared.
    pub bytes: u64,
    /// FNV-1a 64 checksum of the bytes as read (verify) or written (write).
    pub checksum: u64,
    /// For a verification: whether every byte matched. Always true for writes.
    pub ok: bool,
    /// For a verification: number of mismatching 4 KiB blocks.
    pub bad_blocks: u64,
}
