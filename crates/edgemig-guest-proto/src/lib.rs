//! Messages between the host agent (`edgemigd`) and the guest agent
//! (`edgemig-guest`), carried as one JSON object per line over the
//! virtio-serial port [`PORT_NAME`].
//!
//! The host sends [`HostMessage`]s (a request with an id); the guest answers
//! each with a [`GuestMessage::Response`] carrying the same id, and sends
//! [`GuestMessage::Event`]s on its own (readiness at boot). Both sides ignore
//! lines they cannot parse, so an older peer never kills the channel.

use serde::{Deserialize, Serialize};

/// Name of the virtio-serial port (`/dev/virtio-ports/<name>` in the guest).
pub const PORT_NAME: &str = "org.edgemig.agent";

/// Version of this protocol. The host refuses requests that need a newer one.
pub const PROTOCOL_VERSION: u32 = 1;

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
    /// the address (ADD_ADDR).
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
    /// Count the guest's TCP connections (MPTCP subflows included) by local
    /// address.
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

/// The guest's established TCP connections (MPTCP subflows count one each)
/// grouped by local address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetReport {
    /// `(local address, established connections)`, sorted by address.
    pub by_address: Vec<(String, u32)>,
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
    fn unknown_request_is_an_error_not_a_panic() {
        assert!(
            serde_json::from_str::<HostMessage>(r#"{"id":1,"request":{"op":"reboot"}}"#).is_err()
        );
    }
}
