//! Messages between the host agent (`edgemigd`) and the guest agent
//! (`edgemig-guest`), carried as one JSON object per line over the
//! virtio-serial port [`PORT_NAME`].
//!
//! The host sends [`HostMessage`]s (a request with an id); the guest answers
//! each with a [`GuestMessage::Response`] carrying the same id, and sends
//! [`GuestMessage::Event`]s on its own (readiness at boot). Both sides ignore
//! lines they cannot parse, so an older peer never kills the channel.
//!
//! Network handoff (docs/handoff.md): [`GuestRequest::NicPlan`] stages a
//! NIC's new address before switchover and the guest applies it on its own
//! when the NIC gets carrier ([`GuestRequest::NicPlans`] tells when);
//! [`GuestRequest::NicUp`] does the same at once (and confirms a plan, as
//! it is idempotent); [`GuestRequest::NetStatus`] lists the connections
//! ([`NetReport`]) so the host can tell when no connection is left on the
//! old address only ([`NetReport::sole_address`]) and retire it with
//! [`GuestRequest::NicRetire`].

use serde::{Deserialize, Serialize};

/// Name of the virtio-serial port (`/dev/virtio-ports/<name>` in the guest).
pub const PORT_NAME: &str = "org.edgemig.agent";

/// Version of this protocol. The host refuses requests that need a newer one.
///
/// * 1: the first version.
/// * 2: [`GuestRequest::NicPlan`] / [`GuestRequest::NicPlans`], and
///   [`NetReport::connections`] (exact accounting through sock_diag). An
///   older guest answers the new requests with an error
///   ("unsupported request") and leaves the new report fields empty.
pub const PROTOCOL_VERSION: u32 = 2;

/// TCP/MPTCP port on which the guest agent serves echo and bulk traffic.
pub const SERVICE_PORT: u16 = 7000;

/// Default block device of the VM's data disk inside the guest.
pub const DEFAULT_DATA_DISK: &str = "/dev/vda";

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
    /// as [`NicPlanState::Failed`], and is not retried (stage it again, or
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
        /// Block device; [`DEFAULT_DATA_DISK`] when absent.
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
        /// Block device; [`DEFAULT_DATA_DISK`] when absent.
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
    /// [`PROTOCOL_VERSION`] the guest speaks.
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
/// the clock of [`AgentInfo::boot_ms`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicPlanStatus {
    /// Interface.
    pub nic: String,
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
    /// What applying did (as a [`GuestReply::Nic`] of `NicUp` reports it).
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
    /// Interface.
    pub nic: String,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_wire_format_is_stable() {
        let msg = HostMessage {
            id: 7,
            request: GuestRequest::MemWrite {
                mib: 64,
                rate_mib_s: None,
            },
        };
        let line = serde_json::to_string(&msg).unwrap();
        assert_eq!(
            line,
            r#"{"id":7,"request":{"op":"mem_write","mib":64,"rate_mib_s":null}}"#
        );
        assert_eq!(serde_json::from_str::<HostMessage>(&line).unwrap(), msg);
    }

    #[test]
    fn response_round_trips() {
        let msg = GuestMessage::Response {
            id: 3,
            outcome: GuestOutcome::Error("no such device".into()),
        };
        let line = serde_json::to_string(&msg).unwrap();
        assert_eq!(
            line,
            r#"{"type":"response","id":3,"error":"no such device"}"#
        );
        assert_eq!(serde_json::from_str::<GuestMessage>(&line).unwrap(), msg);
        let ok = GuestMessage::Response {
            id: 4,
            outcome: GuestOutcome::Ok(GuestReply::MemVerify(MemVerifyReport {
                pages: 10,
                bad_pages: 0,
                first_bad_page: None,
            })),
        };
        let line = serde_json::to_string(&ok).unwrap();
        assert_eq!(serde_json::from_str::<GuestMessage>(&line).unwrap(), ok);
    }

    #[test]
    fn nic_plan_wire_format() {
        let msg = HostMessage {
            id: 2,
            request: GuestRequest::NicPlan {
                nic: "eth1".into(),
                address: "10.20.0.5/24".into(),
                gateway: "10.20.0.1".into(),
            },
        };
        let line = serde_json::to_string(&msg).unwrap();
        assert_eq!(
            line,
            r#"{"id":2,"request":{"op":"nic_plan","nic":"eth1","address":"10.20.0.5/24","gateway":"10.20.0.1"}}"#
        );
        assert_eq!(serde_json::from_str::<HostMessage>(&line).unwrap(), msg);
        let status = NicPlanStatus {
            nic: "eth1".into(),
            address: "10.20.0.5/24".into(),
            gateway: "10.20.0.1".into(),
            state: NicPlanState::Failed("no carrier".into()),
            staged_ms: 10,
            applied_ms: Some(20),
            applied_ago_ms: Some(5),
            report: None,
        };
        let reply = GuestReply::NicPlans(NicPlansReport {
            plans: vec![status.clone()],
        });
        let v = serde_json::to_value(&reply).unwrap();
        assert_eq!(v["kind"], "nic_plans");
        assert_eq!(v["plans"][0]["state"]["failed"], "no carrier");
        assert_eq!(serde_json::from_value::<GuestReply>(v).unwrap(), reply);
        let v = serde_json::to_value(GuestReply::NicPlan(NicPlanStatus {
            state: NicPlanState::Pending,
            ..status
        }))
        .unwrap();
        assert_eq!(v["kind"], "nic_plan");
        assert_eq!(v["state"], "pending");
    }

    #[test]
    fn protocol_1_net_report_still_parses() {
        let old = r#"{"kind":"net","by_address":[["10.10.0.2",3]]}"#;
        match serde_json::from_str::<GuestReply>(old).unwrap() {
            GuestReply::Net(n) => {
                assert_eq!(n.by_address, vec![("10.10.0.2".to_string(), 3)]);
                assert!(n.connections.is_empty() && n.sole_address.is_empty());
                assert_eq!(n.connections_total, 0);
            }
            other => panic!("unexpected {other:?}"),
        }
        let new = GuestReply::Net(NetReport {
            by_address: vec![("10.20.0.5".into(), 2)],
            connections: vec![ConnectionInfo {
                mptcp: true,
                remote: "10.99.0.2".into(),
                local_addresses: vec!["10.10.0.2".into(), "10.20.0.5".into()],
                subflows: 2,
                rtt_ms: 1.5,
                bytes: 4096,
            }],
            connections_total: 1,
            sole_address: vec![],
        });
        let line = serde_json::to_string(&new).unwrap();
        assert_eq!(serde_json::from_str::<GuestReply>(&line).unwrap(), new);
    }

    #[test]
    fn unknown_request_is_an_error_not_a_panic() {
        assert!(
            serde_json::from_str::<HostMessage>(r#"{"id":1,"request":{"op":"reboot"}}"#).is_err()
        );
    }
}
