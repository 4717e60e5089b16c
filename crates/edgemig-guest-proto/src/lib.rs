//! Messages between the host agent (`edgemigd`) and the guest agent
//! (`edgemig-guest`), carried as one JSON object per line over the
//! virtio-serial port [`PORT_NAME`].
//!
//! The host sends host messages (a request with an id); the guest answers
//! each with a response carrying the same id, and sends events on its own
//! (readiness at boot and after each agent restart). Both sides ignore
//! lines they cannot parse, so an older peer never kills the channel.
//!
//! The message types of the current protocol live in [`v3`] and are
//! re-exported at the crate root; reports inside replies ([`NicReport`],
//! [`NetReport`], …) are shared.
//!
//! Network handoff (docs/handoff.md): `NicPlan` stages a NIC's new address
//! before switchover and the guest applies it on its own when the NIC gets
//! carrier (`NicPlans` tells when); `NicUp` does the same at once (and
//! confirms a plan, as it is idempotent); `NetStatus` lists the
//! connections ([`NetReport`]) so the host can tell when no connection is
//! left on the old address only ([`NetReport::sole_address`]) and retire
//! it with `NicRetire`; `NicReannounce` announces the new address again
//! for MPTCP clients that missed the kernel's ADD_ADDRs. From protocol 3 the NIC requests may name the NIC
//! by MAC ([`MacAddr`]), and `MptcpApps` gives unmodified applications
//! MPTCP ([`mptcp_apps`]; docs/guest-agent.md).

pub mod mac;
pub mod mptcp_apps;
pub mod reports;
pub mod v3;

pub use mac::{BadMac, MacAddr};
pub use reports::{
    ConnectionInfo, DiskReport, FillReport, MAX_CONNECTIONS, MemStatus, MemVerifyReport, NetReport,
    NicPlanState, NicPlanStatus, NicPlansReport, NicReport,
};
pub use v3::{
    AgentInfo, GuestEvent, GuestMessage, GuestOutcome, GuestReply, GuestRequest, HostMessage,
};

/// Name of the virtio-serial port (`/dev/virtio-ports/<name>` in the guest).
pub const PORT_NAME: &str = "org.edgemig.agent";

/// Version of this protocol. The host refuses requests that need a newer one.
///
/// * 1: the first version.
/// * 2: `NicPlan` / `NicPlans`, and [`NetReport::connections`] (exact
///   accounting through sock_diag). An older guest answers the new
///   requests with an error ("unsupported request") and leaves the new
///   report fields empty.
/// * 3 ([`v3`]): NICs named by MAC (optional `mac` on `NicUp`, `NicPlan`,
///   `NicRetire`; [`NicReport`] and [`NicPlanStatus`] give the real
///   interface name and its MAC); `MptcpApps` / `MptcpAppsStatus` (MPTCP
///   for unmodified applications, through BPF or `mptcpize`); the agent's
///   identity gains `kernel`, `systemd` and `mptcp_apps`; the guest keeps
///   staged plans, NIC configuration and the MPTCP scope across agent
///   restarts (and announces itself again after each). An older guest
///   refuses a request that carries a `mac` and the new requests
///   ("unsupported request"); every new reply field has a default.
pub const PROTOCOL_VERSION: u32 = 3;

/// TCP/MPTCP port on which the guest agent serves echo and bulk traffic.
pub const SERVICE_PORT: u16 = 7000;

/// Default block device of the VM's data disk inside the guest.
pub const DEFAULT_DATA_DISK: &str = "/dev/vda";

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
                mac: None,
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
            mac: None,
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
            mptcp_counters: vec![("MPJoinSynRx".into(), 1)],
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
