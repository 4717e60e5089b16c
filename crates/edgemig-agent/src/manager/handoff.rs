//! The network handoff of a migrated VM. At the destination: turn the
//! handoff NIC's carrier on, have the guest configure its new address and
//! announce it (MPTCP ADD_ADDR), wait until connections moved (or the grace
//! period for non-MPTCP clients ended), retire the old NIC and remove the
//! tunnel at both sites. At the source: the VXLAN that bridges the old
//! address's network to the destination meanwhile.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::Method;
use edgemig_api::peer::HandoffStatus;
use edgemig_guest_proto::{GuestReply, GuestRequest};
use edgemig_pki::PeerClient;

use super::{Live, Manager, ManagerError};
use crate::qemu;
use crate::vm::VmRecord;

/// How long the old address stays when no connection moved yet and the
/// config says nothing.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(60);
/// Shortest time between announcing and retiring (clients join subflows).
const SETTLE: Duration = Duration::from_secs(2);
/// How often the guest's connections are counted.
const POLL: Duration = Duration::from_millis(500);
/// Limit of one guest request during the handoff.
const GUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Name of the source-side VXLAN device for tunnel `vni`.
pub fn source_tunnel_name(vni: u32) -> String {
    format!("emvx{vni:06x}")
}

fn ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Connections still on the old address only, and connections that use
/// the new one. A guest speaking protocol 2 reports both exactly (sock_diag,
/// MPTCP subflows grouped by connection); an older guest only counts
/// sockets per address, and the difference is the best guess then.
fn old_and_moved(n: &edgemig_guest_proto::NetReport, old_ip: &str, new_ip: &str) -> (u32, u32) {
    let count = |list: &[(String, u32)], ip: &str| {
        list.iter().find(|(a, _)| a == ip).map_or(0, |(_, c)| *c)
    };
    if n.connections.is_empty() && n.sole_address.is_empty() {
        let (old, new) = (count(&n.by_address, old_ip), count(&n.by_address, new_ip));
        return (old.saturating_sub(new), new);
    }
    let moved = n
        .connections
        .iter()
        .filter(|c| c.local_addresses.iter().any(|a| a == new_ip))
        .count();
    (
        count(&n.sole_address, old_ip),
        u32::try_from(moved).unwrap_or(u32::MAX),
    )
}

impl Manager {
    /// The address other sites' agents reach site `site` at.
    pub(crate) fn peer_ip(&self, site: &str) -> Result<Ipv4Addr, ManagerError> {
        match self
            .config
            .peers
            .iter()
            .find(|p| p.site == site)
            .map(|p| p.address.ip())
        {
            Some(std::net::IpAddr::V4(ip)) => Ok(ip),
            _ => Err(ManagerError::Missing(format!(
                "Site {site:?} is not a known peer of {}",
                self.config.site
            ))),
        }
    }

    /// The handoff of VM `name` at this site, if one ran.
    pub(crate) fn handoff_status(&self, name: &str) -> Option<HandoffStatus> {
        self.handoffs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    fn set_handoff(&self, name: &str, status: &HandoffStatus) {
        self.handoffs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(name.to_string(), status.clone());
    }

    /// Source side: bridges this site's VM network to `remote` for VM
    /// tunnel `vni`, so the VM's old address stays reachable.
    pub(crate) async fn open_source_tunnel(
        &self,
        vni: u32,
        remote: Ipv4Addr,
    ) -> Result<(), ManagerError> {
        let name = source_tunnel_name(vni);
        let bridge = self.config.vm_network.bridge.clone();
        self.netdev
            .ensure_tunnel(&name, &bridge, vni, remote)
            .await
            .map_err(ManagerError::Netdev)?;
        tracing::info!(vni, %remote, "tunnel to the VM's new site open");
        Ok(())
    }

    /// Source side: removes tunnel `vni`.
    pub async fn close_source_tunnel(&self, vni: u32) -> Result<(), ManagerError> {
        self.netdev
            .delete(&source_tunnel_name(vni))
            .await
            .map_err(ManagerError::Netdev)?;
        tracing::info!(vni, "tunnel closed");
        Ok(())
    }

    /// Destination side: runs the handoff of a VM that just resumed here.
    pub(crate) fn start_handoff(self: &Arc<Self>, name: &str, live: &Live, record: &VmRecord) {
        let Some(next) = record.next_address else {
            return;
        };
        let skip = self
            .skip_handoff
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(name);
        let net = &self.config.vm_network;
        let status = HandoffStatus {
            state: "pending".into(),
            old_address: format!("{}/{}", record.address, record.prefix_len),
            new_address: format!("{next}/{}", net.subnet.prefix_len()),
            ..HandoffStatus::default()
        };
        if skip {
            let kept = HandoffStatus {
                state: "disabled".into(),
                ..status
            };
            self.set_handoff(name, &kept);
            tracing::info!(
                vm = name,
                "handoff disabled: the old address stays behind the tunnel"
            );
            return;
        }
        self.set_handoff(name, &status);
        let manager = self.clone();
        let live = live.clone();
        let record = record.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let mut status = status;
            if let Err(reason) = manager.handoff(&live, &record, &mut status, started).await {
                tracing::warn!(vm = %record.name, %reason, "network handoff not possible; the old address stays reachable through the tunnel");
                status.state = format!("not_possible: {reason}");
            }
            manager.set_handoff(&record.name, &status);
        });
    }

    async fn guest_nic(&self, live: &Live, request: GuestRequest) -> Result<GuestReply, String> {
        live.guest
            .request(request, GUEST_TIMEOUT)
            .await
            .map_err(|e| crate::http::chain(&e))
    }

    async fn handoff(
        &self,
        live: &Live,
        record: &VmRecord,
        status: &mut HandoffStatus,
        started: Instant,
    ) -> Result<(), String> {
        let active = record.active_nic.min(1);
        let other = 1 - active;
        let net = &self.config.vm_network;
        live.guest
            .wait_ready(Duration::from_secs(60))
            .await
            .map_err(|e| format!("guest agent unavailable: {}", crate::http::chain(&e)))?;
        // The old NIC gets its own routing table first, so replies from the
        // old address keep leaving through it once the default moves.
        let old_gw = record.gateway.map(|g| g.to_string()).unwrap_or_default();
        self.guest_nic(
            live,
            GuestRequest::NicUp {
                nic: format!("eth{active}"),
                address: status.old_address.clone(),
                gateway: old_gw,
            },
        )
        .await?;
        live.qmp
            .set_link(&qemu::nic_id(other), true)
            .await
            .map_err(|e| format!("cannot turn the handoff NIC on: {e}"))?;
        self.guest_nic(
            live,
            GuestRequest::NicUp {
                nic: format!("eth{other}"),
                address: status.new_address.clone(),
                gateway: net.gateway().to_string(),
            },
        )
        .await?;
        status.state = "announced".into();
        status.announced_ms = Some(ms(started));
        self.set_handoff(&record.name, status);
        tracing::info!(vm = %record.name, new = %status.new_address, "new address announced");

        let grace = self
            .config
            .handoff_grace_s
            .map_or(DEFAULT_GRACE, Duration::from_secs);
        let announced = Instant::now();
        let old_ip = record.address.to_string();
        let new_ip = record
            .next_address
            .map(|a| a.to_string())
            .unwrap_or_default();
        loop {
            tokio::time::sleep(POLL).await;
            let (on_old, moved) = match self.guest_nic(live, GuestRequest::NetStatus).await {
                Ok(GuestReply::Net(n)) => old_and_moved(&n, &old_ip, &new_ip),
                _ => (0, 0),
            };
            status.moved = moved;
            status.on_old = on_old;
            let settled = announced.elapsed() >= SETTLE;
            if (settled && status.on_old == 0) || announced.elapsed() >= grace {
                break;
            }
        }
        self.guest_nic(
            live,
            GuestRequest::NicRetire {
                nic: format!("eth{active}"),
            },
        )
        .await?;
        let _ = live.qmp.set_link(&qemu::nic_id(active), false).await;
        let (vxlan, bridge) = record.tunnel_names();
        let _ = self.netdev.delete(&vxlan).await;
        let _ = self.netdev.delete(&bridge).await;
        if let Err(e) = self.close_peer_tunnel(record).await {
            tracing::warn!(vm = %record.name, error = %e, "cannot close the tunnel at the old site");
        }
        if let Ok(mut r) = self.record(&record.name) {
            r.active_nic = other;
            r.address = record.next_address.unwrap_or(r.address);
            r.prefix_len = net.subnet.prefix_len();
            r.gateway = Some(net.gateway());
            r.next_address = None;
            let _ = self.store.put(&r);
        }
        status.retired_ms = Some(ms(started));
        status.state = if announced.elapsed() >= grace && status.on_old > 0 {
            "timeout".into()
        } else {
            "done".into()
        };
        tracing::info!(vm = %record.name, moved = status.moved, on_old = status.on_old, "old address retired");
        Ok(())
    }

    async fn close_peer_tunnel(&self, record: &VmRecord) -> Result<(), String> {
        let source = self
            .tunnel_sources
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&record.name)
            .ok_or_else(|| "unknown source site".to_string())?;
        let peer = self
            .config
            .peers
            .iter()
            .find(|p| p.site == source)
            .ok_or("source is not a peer")?;
        let tls = self.peer_tls().ok_or("no TLS files")?;
        let client = PeerClient::new(&tls, peer.address, &source).map_err(|e| e.to_string())?;
        let _: serde_json::Value = client
            .request_json(
                Method::POST,
                &format!("/v1/peer/tunnels/{}/close", record.vni()),
                None::<&()>,
                Duration::from_secs(30),
            )
            .await
            .map_err(|e| crate::http::chain(&e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use edgemig_guest_proto::{ConnectionInfo, NetReport};

    use super::old_and_moved;

    fn conn(local: &[&str]) -> ConnectionInfo {
        ConnectionInfo {
            mptcp: true,
            remote: "172.30.1.2".into(),
            local_addresses: local.iter().map(ToString::to_string).collect(),
            subflows: u32::try_from(local.len()).unwrap(),
            rtt_ms: 1.0,
            bytes: 10,
        }
    }

    #[test]
    fn exact_accounting_counts_connections_not_subflows() {
        let n = NetReport {
            by_address: vec![("10.10.0.2".into(), 3), ("10.20.0.2".into(), 1)],
            connections: vec![conn(&["10.10.0.2", "10.20.0.2"]), conn(&["10.10.0.2"])],
            connections_total: 2,
            sole_address: vec![("10.10.0.2".into(), 1)],
        };
        assert_eq!(old_and_moved(&n, "10.10.0.2", "10.20.0.2"), (1, 1));
        // A protocol-1 guest: per-address socket counts only.
        let old = NetReport {
            by_address: vec![("10.10.0.2".into(), 3), ("10.20.0.2".into(), 1)],
            connections: vec![],
            connections_total: 0,
            sole_address: vec![],
        };
        assert_eq!(old_and_moved(&old, "10.10.0.2", "10.20.0.2"), (2, 1));
    }
}
