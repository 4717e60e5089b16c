//! The protocol-2 shapes of the messages, re-exported at the crate root:
//! the types hosts built before protocol 3 compile against. On the wire
//! they are a subset of [`crate::v3`]: every message they write, a
//! protocol-3 guest reads; every protocol-3 message of a kind they know
//! (an agent identity with more fields, a NIC report with its MAC), they
//! read, ignoring what is new. The guest agent speaks [`crate::v3`].

use serde::{Deserialize, Serialize};

use crate::{
    DiskReport, FillReport, MemStatus, MemVerifyReport, NetReport, NicPlanStatus, NicPlansReport,
    NicReport,
};

/// One line from the host to the guest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostMessage {
    /// Chosen by the host; echoed in the response.
    pub id: u64,
    /// What the guest should do.
    pub request: GuestRequest,
}

/// Requests the guest agent understands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum GuestRequest {
    /// Ask for the agent's identity; answered with [`GuestReply::Hello`].
    Hello,
    /// Start (or restart) the memory writer over a working set of `mib` MiB.
    MemWrite {
        /// Working-set size in MiB.
        mib: u32,
        /// Dirty rate in MiB/s; `None` writes as fast as possible.
        #[serde(default)]
        rate_mib_s: Option<u32>,
    },
    /// Stop the memory writer; its memory stays allocated for verification.
    MemStop,
    /// Report the memory writer's progress.
    MemStatus,
    /// Check every page of the working set against its expected pattern.
    MemVerify,
    /// Hold `mib` MiB of mixed data (half random, half text) in guest
    /// memory, replacing what an earlier fill held; a realistic migration
    /// payload for benchmarks.
    MemFill {
        /// Amount in MiB.
        mib: u32,
    },
    /// Bring up a NIC at a new site: address, per-interface policy routing
    /// (a table and rule for its source address), default route through it,
    /// and an MPTCP `signal` endpoint so established connections announce
    /// the address (ADD_ADDR). Idempotent: the same request again succeeds
    /// and changes nothing.
    NicUp {
        /// Interface in the guest (`eth0` or `eth1`).
        nic: String,
        /// Address with prefix, e.g. `10.20.0.5/24`.
        address: String,
        /// Gateway of that network.
        gateway: String,
    },
    /// Retire a NIC: remove its MPTCP endpoints (also id 0, which closes the
    /// initial subflows on its address), flush its addresses and routes,
    /// take it down.
    NicRetire {
        /// Interface in the guest.
        nic: String,
    },
    /// Stage a plan for a NIC: "when this NIC's carrier comes up, configure
    /// it so". The guest keeps the plan in memory (it migrates with the VM),
    /// sets the NIC administratively up (no address) so that its carrier can
    /// be seen, and applies the plan the moment the NIC has carrier
    /// (`IFF_LOWER_UP`, watched through rtnetlink link notifications) — at
    /// once if it has carrier already. Applying first gives every other NIC
    /// that holds an address its own policy table and rule (gateway taken
    /// from its default route), then does exactly what [`GuestRequest::NicUp`]
    /// does. A later `NicUp` with the same values succeeds and changes
    /// nothing, so the host can send it as a confirmation or fallback.
    ///
    /// Answered with [`GuestReply::NicPlan`] (the plan's state right after
    /// staging: `applied` when the carrier was already up, else `pending`);
    /// an error when the NIC does not exist or the address or gateway is
    /// unusable. A new plan for the same NIC replaces the old one;
    /// [`GuestRequest::NicRetire`] of the NIC drops its plan. A plan is
    /// applied once: a failure is logged on the guest console and reported
    /// as [`crate::NicPlanState::Failed`], and is not retried (stage it again, or
    /// send `NicUp`). Stage a plan while the NIC's carrier is off (QMP
    /// `set_link ... off`), or it applies at once. Addresses only ever come
    /// from the host: the guest runs no DHCP client.
    NicPlan {
        /// Interface in the guest (`eth0` or `eth1`).
        nic: String,
        /// Address with prefix, e.g. `10.20.0.5/24`.
        address: String,
        /// Gateway of that network.
        gateway: String,
    },
    /// List the staged plans and their states; answered with
    /// [`GuestReply::NicPlans`].
    NicPlans,
    /// Account for the guest's TCP connections; answered with
    /// [`GuestReply::Net`] ([`NetReport`]).
    NetStatus,
    /// Write `mib` MiB of data derived from `seed` to a block device.
    DiskWrite {
        /// Block device; [`crate::DEFAULT_DATA_DISK`] when absent.
        #[serde(default)]
        device: Option<String>,
        /// Amount to write in MiB, from `offset_mib`.
        mib: u32,
        /// Where to start, in MiB from the start of the device.
        #[serde(default)]
        offset_mib: u32,
        /// Seed of the data.
        seed: u64,
    },
    /// Read back `mib` MiB and compare with the data derived from `seed`.
    DiskVerify {
        /// Block device; [`crate::DEFAULT_DATA_DISK`] when absent.
        #[serde(default)]
        device: Option<String>,
        /// Amount to verify in MiB, from `offset_mib`.
        mib: u32,
        /// Where to start, in MiB from the start of the device.
        #[serde(default)]
        offset_mib: u32,
        /// Seed the data was written with.
        seed: u64,
    },
}

/// One line from the guest to the host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum GuestMessage {
    /// Something the guest reports on its own.
    Event {
        /// The event.
        event: GuestEvent,
    },
    /// The answer to the request with the same id.
    Response {
        /// Id of the request.
        id: u64,
        /// The outcome.
        #[serde(flatten)]
        outcome: GuestOutcome,
    },
}

/// Outcome of a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuestOutcome {
    /// The request succeeded.
    Ok(GuestReply),
    /// The request failed; the text says why.
    Error(String),
}

/// Unsolicited events from the guest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum GuestEvent {
    /// The agent is up and serving requests.
    Ready(AgentInfo),
}

/// Identity and timing of the guest agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentInfo {
    /// Version of the `edgemig-guest` binary.
    pub version: String,
    /// [`crate::PROTOCOL_VERSION`] the guest speaks.
    pub protocol: u32,
    /// Guest uptime (from `/proc/uptime`) when the agent became ready, in ms.
    pub boot_ms: u64,
}

/// Successful answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum GuestReply {
    /// Answer to [`GuestRequest::Hello`].
    Hello(AgentInfo),
    /// State of the memory writer.
    Mem(MemStatus),
    /// Result of a memory verification.
    MemVerify(MemVerifyReport),
    /// Result of a disk write or verification.
    Disk(DiskReport),
    /// Result of a memory fill.
    Filled(FillReport),
    /// Result of a NIC change.
    Nic(NicReport),
    /// Connections by local address.
    Net(NetReport),
    /// Answer to [`GuestRequest::NicPlan`]: the staged plan.
    NicPlan(NicPlanStatus),
    /// Answer to [`GuestRequest::NicPlans`]: every staged plan.
    NicPlans(NicPlansReport),
}
