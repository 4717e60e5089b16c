//! Protocol 3 messages (re-exported at the crate root). Next to protocol 2
//! they add
//!
//! * NICs named by MAC: [`GuestRequest::NicUp`], [`GuestRequest::NicPlan`]
//!   and [`GuestRequest::NicRetire`] take an optional `mac`; when it is
//!   given the guest acts on the interface with that MAC, whatever its name
//!   (`enp0s3`, `ens4`, …; the `nic` name is then informative), and the
//!   reports carry the interface's real name and its MAC;
//! * [`GuestRequest::MptcpApps`] / [`GuestRequest::MptcpAppsStatus`]:
//!   MPTCP for unmodified applications ([`crate::mptcp_apps`]);
//! * more of the agent's identity in [`AgentInfo`]: kernel release,
//!   whether systemd runs it, what it can do for applications.
//!
//! A protocol-3 guest also keeps what the host told it across its own
//! restarts (staged plans, NIC configuration, the MPTCP scope; see
//! docs/guest-agent.md) and sends [`GuestEvent::Ready`] again each time it
//! starts.
//!
//! Wire compatibility: every protocol-2 request reads as the same
//! protocol-3 request (no `mac`); a request with a `mac`, and the new
//! requests, are refused by an older guest ("unsupported request"), so a
//! host sends them only to a guest whose [`AgentInfo::protocol`] is 3 or
//! more. Every field added to a reply or to [`AgentInfo`] has a default, so
//! a protocol-3 host reads older guests' answers.

use serde::{Deserialize, Serialize};

use crate::mptcp_apps::{MptcpAppsReport, MptcpAppsSupport, MptcpScope};
use crate::{
    DiskReport, FillReport, MacAddr, MemStatus, MemVerifyReport, NetReport, NicPlanStatus,
    NicPlansReport, NicReport,
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
    /// memory, replacing what an earlier fill held.
    MemFill {
        /// Amount in MiB.
        mib: u32,
    },
    /// Bring up a NIC at a new site: address, per-interface policy routing
    /// (a table and rule for its source address), default route through it,
    /// and an MPTCP `signal` endpoint so established connections announce
    /// the address (ADD_ADDR). Idempotent: the same request again succeeds
    /// and changes nothing. Answered with [`GuestReply::Nic`].
    NicUp {
        /// Interface name (`eth0` in the busybox guest); informative only
        /// when `mac` is given.
        nic: String,
        /// The NIC's MAC address: the guest acts on the interface that has
        /// it, whatever its name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mac: Option<MacAddr>,
        /// Address with prefix, e.g. `10.20.0.5/24`.
        address: String,
        /// Gateway of that network.
        gateway: String,
    },
    /// Retire a NIC: remove its MPTCP endpoints (also id 0, which closes the
    /// initial subflows on its address), flush its addresses and routes,
    /// take it down, drop its plan.
    NicRetire {
        /// Interface name; informative only when `mac` is given.
        nic: String,
        /// The NIC's MAC address (see [`GuestRequest::NicUp`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mac: Option<MacAddr>,
    },
    /// Announce `address` (held by the NIC) to every established MPTCP
    /// connection once more: the guest adds another `signal` endpoint for
    /// it, on a free port, which the kernel announces with its own
    /// ADD_ADDR. The kernel re-sends an unanswered ADD_ADDR only 3 times
    /// (`add_addr_timeout` apart, 2 s here), so a client whose every path
    /// was cut longer than that never learns the address; this is how the
    /// host tells it again. A client that joins does so on that port; the
    /// endpoint stays until the NIC is retired (retiring removes every
    /// endpoint of its addresses). Answered with [`GuestReply::Nic`], its
    /// `endpoints` the new endpoint's id. Older protocol-3 guests refuse it
    /// ("unsupported request").
    NicReannounce {
        /// Interface name; informative only when `mac` is given.
        nic: String,
        /// The NIC's MAC address (see [`GuestRequest::NicUp`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mac: Option<MacAddr>,
        /// The address to announce, with or without a prefix
        /// (`10.20.0.5/24` or `10.20.0.5`); the NIC must hold it.
        address: String,
    },
    /// Stage a plan for a NIC: "when this NIC's carrier comes up, configure
    /// it so" (as [`GuestRequest::NicUp`] would). The guest sets the NIC
    /// administratively up (no address) so its carrier can be seen and
    /// applies the plan the moment it has carrier — at once if it has it
    /// already. Answered with [`GuestReply::NicPlan`]; an error when the NIC
    /// does not exist or the address or gateway is unusable. A new plan for
    /// the same NIC replaces the old one. The plan lives in guest memory
    /// (it migrates with the VM) and in the agent's state directory (it
    /// survives an agent restart). Details in docs/handoff.md.
    NicPlan {
        /// Interface name; informative only when `mac` is given.
        nic: String,
        /// The NIC's MAC address (see [`GuestRequest::NicUp`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mac: Option<MacAddr>,
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
    /// Give unmodified applications MPTCP: every application (`all`, needs
    /// the BPF hook), the processes of some systemd units (`units`: BPF
    /// when the hook is there, else `mptcpize`), or none (`off`). Replaces
    /// the previous scope; survives agent restarts. Answered with
    /// [`GuestReply::MptcpApps`]; an error, and nothing changed, when the
    /// scope is impossible here (`all` without the hook, `units` without
    /// systemd or without both the hook and `mptcpize`).
    MptcpApps {
        /// Which applications.
        scope: MptcpScope,
        /// Restart the running units whose processes predate the change,
        /// so their existing sockets (a server's listener) are MPTCP too;
        /// without it they are reported as needing a restart. Restarting
        /// closes those units' open connections.
        #[serde(default)]
        restart: bool,
    },
    /// The MPTCP scope in force; answered with [`GuestReply::MptcpApps`].
    MptcpAppsStatus,
    /// Misbehave as a broken or hostile guest would, for tests of the
    /// host's limits: write one line of `mib` MiB (no JSON, no newline
    /// until its end) to the host, then answer with [`GuestReply::Hello`].
    Babble {
        /// Length of the line, MiB.
        mib: u32,
    },
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
    /// The agent is up and serving requests: at boot, after every agent
    /// restart, and each time the host side of the port reconnects.
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
    /// The guest kernel's release (`uname -r`); empty from older agents.
    #[serde(default)]
    pub kernel: String,
    /// Whether systemd runs the agent (a service of a real distribution)
    /// rather than the busybox image's `/init`.
    #[serde(default)]
    pub systemd: bool,
    /// What the guest can do to give unmodified applications MPTCP.
    #[serde(default)]
    pub mptcp_apps: MptcpAppsSupport,
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
    /// Answer to [`GuestRequest::MptcpApps`] and
    /// [`GuestRequest::MptcpAppsStatus`].
    MptcpApps(MptcpAppsReport),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mptcp_apps::{HookSupport, MptcpMechanism};

    fn mac() -> MacAddr {
        "52:54:01:00:00:03".parse().unwrap()
    }

    #[test]
    fn nic_requests_by_mac() {
        let msg = HostMessage {
            id: 5,
            request: GuestRequest::NicUp {
                nic: "eth1".into(),
                mac: Some(mac()),
                address: "10.20.0.5/24".into(),
                gateway: "10.20.0.1".into(),
            },
        };
        let line = serde_json::to_string(&msg).unwrap();
        assert_eq!(
            line,
            r#"{"id":5,"request":{"op":"nic_up","nic":"eth1","mac":"52:54:01:00:00:03","address":"10.20.0.5/24","gateway":"10.20.0.1"}}"#
        );
        assert_eq!(serde_json::from_str::<HostMessage>(&line).unwrap(), msg);
        // Without a MAC the line is protocol 2's, byte for byte.
        let plain = HostMessage {
            id: 6,
            request: GuestRequest::NicRetire {
                nic: "eth0".into(),
                mac: None,
            },
        };
        assert_eq!(
            serde_json::to_string(&plain).unwrap(),
            r#"{"id":6,"request":{"op":"nic_retire","nic":"eth0"}}"#
        );
        let again = HostMessage {
            id: 7,
            request: GuestRequest::NicReannounce {
                nic: "eth1".into(),
                mac: Some(mac()),
                address: "10.20.0.5".into(),
            },
        };
        let line = serde_json::to_string(&again).unwrap();
        assert_eq!(
            line,
            r#"{"id":7,"request":{"op":"nic_reannounce","nic":"eth1","mac":"52:54:01:00:00:03","address":"10.20.0.5"}}"#
        );
        assert_eq!(serde_json::from_str::<HostMessage>(&line).unwrap(), again);
        let bad = r#"{"id":1,"request":{"op":"nic_retire","nic":"x","mac":"52:54"}}"#;
        assert!(serde_json::from_str::<HostMessage>(bad).is_err());
    }

    #[test]
    fn protocol_2_lines_read_as_protocol_3() {
        let lines = [
            r#"{"op":"hello"}"#,
            r#"{"op":"mem_write","mib":3,"rate_mib_s":2}"#,
            r#"{"op":"nic_up","nic":"eth0","address":"10.10.0.2/24","gateway":"10.10.0.1"}"#,
            r#"{"op":"nic_retire","nic":"eth0"}"#,
            r#"{"op":"nic_plan","nic":"eth1","address":"10.20.0.2/24","gateway":"10.20.0.1"}"#,
            r#"{"op":"nic_plans"}"#,
            r#"{"op":"net_status"}"#,
            r#"{"op":"disk_write","device":null,"mib":1,"offset_mib":2,"seed":3}"#,
        ];
        for line in lines {
            let r: GuestRequest = serde_json::from_str(line).unwrap();
            assert_eq!(
                serde_json::to_value(&r).unwrap(),
                serde_json::from_str::<serde_json::Value>(line).unwrap(),
                "{line}"
            );
        }
    }

    #[test]
    fn mptcp_apps_request_and_reply() {
        let msg = HostMessage {
            id: 9,
            request: GuestRequest::MptcpApps {
                scope: MptcpScope::Units(vec!["nginx.service".into()]),
                restart: true,
            },
        };
        let line = serde_json::to_string(&msg).unwrap();
        assert_eq!(
            line,
            r#"{"id":9,"request":{"op":"mptcp_apps","scope":{"units":["nginx.service"]},"restart":true}}"#
        );
        assert_eq!(serde_json::from_str::<HostMessage>(&line).unwrap(), msg);
        let short = r#"{"id":1,"request":{"op":"mptcp_apps","scope":"all"}}"#;
        assert_eq!(
            serde_json::from_str::<HostMessage>(short).unwrap().request,
            GuestRequest::MptcpApps {
                scope: MptcpScope::All,
                restart: false
            }
        );
        let reply = GuestMessage::Response {
            id: 9,
            outcome: GuestOutcome::Ok(GuestReply::MptcpApps(MptcpAppsReport {
                scope: MptcpScope::All,
                mechanism: Some(MptcpMechanism::Bpf),
                pinned: true,
                units: vec![],
            })),
        };
        let line = serde_json::to_string(&reply).unwrap();
        assert_eq!(serde_json::from_str::<GuestMessage>(&line).unwrap(), reply);
    }

    #[test]
    fn agent_info_both_ways() {
        let info = AgentInfo {
            version: "0.1.0".into(),
            protocol: crate::PROTOCOL_VERSION,
            boot_ms: 4200,
            kernel: "6.12.95+deb12-cloud-amd64".into(),
            systemd: true,
            mptcp_apps: MptcpAppsSupport {
                bpf: HookSupport::Available,
                mptcpize: true,
            },
        };
        let ready = GuestMessage::Event {
            event: GuestEvent::Ready(info.clone()),
        };
        let line = serde_json::to_string(&ready).unwrap();
        // A protocol-2 host reads the ready event, ignoring the new fields.
        match serde_json::from_str::<crate::GuestMessage>(&line).unwrap() {
            crate::GuestMessage::Event {
                event: crate::GuestEvent::Ready(old),
            } => assert_eq!(old, info),
            other => panic!("{other:?}"),
        }
        assert_eq!(serde_json::from_str::<GuestMessage>(&line).unwrap(), ready);
        // A protocol-2 guest's identity reads with defaults.
        let old = r#"{"type":"event","event":{"kind":"ready","version":"0.1.0","protocol":2,"boot_ms":900}}"#;
        match serde_json::from_str::<GuestMessage>(old).unwrap() {
            GuestMessage::Event {
                event: GuestEvent::Ready(i),
            } => {
                assert_eq!(i.protocol, 2);
                assert!(!i.systemd && i.kernel.is_empty());
                assert_eq!(i.mptcp_apps.bpf, HookSupport::Unknown);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn nic_reports_carry_name_and_mac() {
        let rep = GuestReply::Nic(NicReport {
            nic: "enp0s4".into(),
            mac: Some(mac()),
            addresses: vec!["10.20.0.5/24".into()],
            endpoints: vec![2],
        });
        let line = serde_json::to_string(&rep).unwrap();
        assert!(
            line.contains(r#""nic":"enp0s4","mac":"52:54:01:00:00:03""#),
            "{line}"
        );
        // Protocol 2's shape reads it too (same struct, optional field).
        match serde_json::from_str::<crate::GuestReply>(&line).unwrap() {
            crate::GuestReply::Nic(n) => assert_eq!(n.mac, Some(mac())),
            other => panic!("{other:?}"),
        }
        let old = r#"{"kind":"nic","nic":"eth1","addresses":[],"endpoints":[]}"#;
        match serde_json::from_str::<GuestReply>(old).unwrap() {
            GuestReply::Nic(n) => assert_eq!(n.mac, None),
            other => panic!("{other:?}"),
        }
    }
}
