//! Step 5, network: the VM keeps its address across the move, then takes
//! the destination's.
//!
//! Source: before the switchover, open the tunnel (a VXLAN from this site's
//! VM bridge to the destination, where the VM's old NIC is bridged to it),
//! so the old address is reachable the moment the VM runs there; stage the
//! destination's address in the guest (it configures its handoff NIC by
//! itself on carrier). After the commit, follow the destination's handoff
//! for the report. Rollback: retire the staged plan, close the tunnel.
//!
//! Destination: once the VM runs, turn the handoff NIC's carrier on, have
//! the guest configure its new address and announce it (MPTCP ADD_ADDR),
//! wait until the connections moved (or the grace period for non-MPTCP
//! clients ended; MPTCP connections that stay behind, their ADD_ADDR lost,
//! get the address announced again), retire the old NIC, remove the tunnel here and ask the
//! source to close its end. Each stage is persisted in the migration's
//! record, so a restarted agent carries on.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::Method;
use edgemig_api::peer::{HandoffStatus, IncomingReady, IncomingStatus};
use edgemig_guest_proto::{GuestReply, GuestRequest};
use edgemig_migration::{DestinationPhase, NetworkReport};

use crate::manager::guest_setup::nic_mac;
use crate::manager::{Live, Manager, ManagerError};
use crate::migration::context::{PEER_TIMEOUT, SourceCtx, SourceError};
use crate::migration::id::MigrationId;
use crate::migration::jobs::SourceTunnel;
use crate::qemu;
use crate::vm::VmRecord;

/// How long the old address stays when no connection moved yet and the
/// config says nothing.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(60);
/// Shortest time between announcing and retiring (clients join subflows).
const SETTLE: Duration = Duration::from_secs(2);
/// How often the guest's connections are counted.
const POLL: Duration = Duration::from_millis(500);
/// How long after an announcement MPTCP connections still only on the old
/// address make the destination announce the new one again: the guest's
/// kernel sends an ADD_ADDR and re-sends it 3 times, `add_addr_timeout`
/// (2 s) apart, then gives up, so a client that has not joined after 8 s
/// missed them all (every path to it cut, say).
const REANNOUNCE_AFTER: Duration = Duration::from_secs(8);
/// Most re-announcements in one handoff (each adds an endpoint in the
/// guest, until its old NIC's retirement at the next move).
const MAX_REANNOUNCES: u32 = 5;
/// Limit of one guest request during the handoff.
const GUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for the destination's handoff before reporting.
const HANDOFF_WAIT: Duration = Duration::from_secs(900);

/// Name of the source-side VXLAN device for tunnel `vni`.
pub fn source_tunnel_name(vni: u32) -> String {
    format!("emvx{vni:06x}")
}

fn ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Whether the VM's address belongs to this site's VM network.
fn address_is_home(manager: &Manager, record: &VmRecord) -> bool {
    manager.config.vm_network.subnet.contains(&record.address)
}

/// Source, before the switchover: opens the tunnel that keeps the VM's
/// address reachable at the destination (when the address is this site's).
pub async fn open_tunnel(ctx: &SourceCtx) -> Result<Option<SourceTunnel>, SourceError> {
    if !address_is_home(&ctx.manager, &ctx.record) {
        return Ok(None);
    }
    let std::net::IpAddr::V4(remote) = ctx.peer_addr.ip() else {
        return Ok(None);
    };
    let tunnel = SourceTunnel {
        vni: ctx.record.vni(),
        remote,
        mac: ctx.record.mac(ctx.record.active_nic.min(1)),
        address: ctx.record.address,
    };
    ctx.manager.open_source_tunnel(tunnel.vni, remote).await?;
    ctx.update(|s| s.tunnel = Some(tunnel.clone()))?;
    Ok(Some(tunnel))
}

/// Source rollback: closes the tunnel.
pub async fn close_tunnel(ctx: &SourceCtx) {
    if let Some(t) = ctx.source_job().tunnel {
        let _ = ctx.manager.close_source_tunnel(t.vni).await;
        let _ = ctx.update(|s| s.tunnel = None);
        ctx.manager.sync_leases();
    }
}

/// Source, the VM just paused for the switchover: the site's VM bridge
/// sends the VM's frames into the tunnel from now on, instead of to the
/// paused QEMU, which would drop them with its copy. They wait in the
/// destination's TAP (its QEMU reads them once it runs the VM), so a
/// client's packets sent during the pause are answered at the resume,
/// rather than after its TCP's next retransmission (200 ms, then 400 ms,
/// 800 ms... after the loss). True when the bridge was told.
pub async fn steer_to_tunnel(ctx: &SourceCtx) -> bool {
    let Some((port, mac)) = steering(ctx) else {
        return false;
    };
    match ctx.manager.netdev.steer(&port, mac).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(id = %ctx.id, error = %crate::http::chain(&e), "cannot steer the VM's frames into the tunnel; the paused copy gets them until the destination runs");
            false
        }
    }
}

/// Source rollback: the bridge learns the VM's MAC at its own TAP again
/// (its frames, once resumed, would teach it too).
pub async fn unsteer(ctx: &SourceCtx) {
    if let Some((port, mac)) = steering(ctx) {
        let _ = ctx.manager.netdev.unsteer(&port, mac).await;
    }
}

/// The tunnel's device and the VM's MAC that the steering is about.
fn steering(ctx: &SourceCtx) -> Option<(String, [u8; 6])> {
    let tunnel = ctx.source_job().tunnel?;
    let mac = crate::netdev::parse_mac(&tunnel.mac)?;
    Some((source_tunnel_name(tunnel.vni), mac))
}

/// Source: tells the guest where its handoff NIC goes; returns the NIC, or
/// `None` when the guest cannot take a plan (then the destination
/// configures the NIC itself after resuming the VM).
pub async fn stage_plan(ctx: &SourceCtx, ready: &IncomingReady) -> Option<String> {
    if !ctx.options.handoff {
        return None;
    }
    let (Some(address), Some(gateway)) = (&ready.next_address, &ready.next_gateway) else {
        return None;
    };
    if ctx.live.guest.agent().is_none_or(|a| a.protocol < 2) {
        return None;
    }
    let index = 1 - ctx.record.active_nic.min(1);
    let nic = format!("eth{index}");
    let plan = GuestRequest::NicPlan {
        nic: nic.clone(),
        mac: nic_mac(&ctx.live.guest, &ctx.record, index),
        address: address.clone(),
        gateway: gateway.clone(),
    };
    match ctx.live.guest.request(plan, Duration::from_secs(10)).await {
        Ok(_) => {
            tracing::info!(id = %ctx.id, %nic, %address, "handoff plan staged in the guest");
            Some(nic)
        }
        Err(e) => {
            tracing::warn!(id = %ctx.id, error = %crate::http::chain(&e), "cannot stage the handoff plan; the destination will configure the NIC");
            None
        }
    }
}

/// Source rollback: drops the staged plan.
pub async fn retire_plan(ctx: &SourceCtx, nic: &str) {
    let index = 1 - ctx.record.active_nic.min(1);
    let _ = ctx
        .live
        .guest
        .request(
            GuestRequest::NicRetire {
                nic: nic.to_string(),
                mac: nic_mac(&ctx.live.guest, &ctx.record, index),
            },
            Duration::from_secs(10),
        )
        .await;
}

/// Source, after the commit: waits for the destination's handoff and
/// summarizes it (`resumed_at`: ms from the migration's start to the VM
/// resuming there; the handoff's times count from there).
pub async fn follow_handoff(ctx: &SourceCtx, resumed_at: u64) -> Option<NetworkReport> {
    let deadline = Instant::now() + HANDOFF_WAIT;
    loop {
        let status: Result<IncomingStatus, _> = ctx
            .peer_call(Method::GET, &ctx.route(""), None::<&()>, PEER_TIMEOUT)
            .await;
        let handoff = status.ok().and_then(|s| s.handoff);
        if let Some(h) = &handoff
            && !matches!(h.state.as_str(), "pending" | "announced")
        {
            return Some(network_report(h, resumed_at, true));
        }
        if Instant::now() > deadline {
            return handoff.map(|h| network_report(&h, resumed_at, false));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The report's view of the destination's handoff; times move from "since
/// the VM resumed" to "since the migration started".
fn network_report(h: &HandoffStatus, resumed_at: u64, finished: bool) -> NetworkReport {
    NetworkReport {
        handoff: if finished {
            h.state.clone()
        } else {
            format!("unfinished ({})", h.state)
        },
        old_address: h.old_address.clone(),
        new_address: h.new_address.clone(),
        announced_ms: h.announced_ms.map(|m| m + resumed_at),
        retired_ms: h.retired_ms.filter(|_| finished).map(|m| m + resumed_at),
        moved: h.moved,
        on_old: h.on_old,
        reannounced: h.reannounced,
    }
}

/// Connections still on the old address only, and connections that use
/// the new one (exact for guests speaking protocol 2: sock_diag, MPTCP
/// subflows grouped by connection; a guess from socket counts otherwise).
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

/// MPTCP connections whose every subflow is on `old_ip`: the ones a lost
/// ADD_ADDR keeps there (plain TCP connections cannot move at all).
fn mptcp_only_on(n: &edgemig_guest_proto::NetReport, old_ip: &str) -> u32 {
    let stuck = n
        .connections
        .iter()
        .filter(|c| c.mptcp && matches!(c.local_addresses.as_slice(), [only] if only == old_ip))
        .count();
    u32::try_from(stuck).unwrap_or(u32::MAX)
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

    /// Source side: bridges this site's VM network to `remote` for tunnel
    /// `vni`, so the VM's old address stays reachable.
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

    /// At a VM's home site, once it is back: closes the tunnel an earlier
    /// migration opened to where it was, and ends that migration's record.
    pub(crate) async fn close_home_tunnel(&self, vni: u32) {
        for job in self.store.jobs().unwrap_or_default() {
            let Some(source) = job.source() else { continue };
            if source.tunnel.as_ref().is_some_and(|t| t.vni == vni) {
                let _ = self.close_source_tunnel(vni).await;
                let _ = self.store.remove_job(job.id.as_str());
            }
        }
        self.sync_leases();
    }

    /// Source side (peer route): the destination of migration `id` asks to
    /// close its tunnel; the job ends here once its driver is done.
    pub async fn close_tunnel_of(
        &self,
        id: &MigrationId,
        caller: &str,
    ) -> Result<(), ManagerError> {
        let job = self
            .store
            .job(id.as_str())
            .map_err(ManagerError::Store)?
            .ok_or_else(|| ManagerError::NotFound(format!("migration {id}")))?;
        let Some(source) = job.source() else {
            return Err(ManagerError::NotFound(format!("migration {id}")));
        };
        if source.to != caller {
            return Err(ManagerError::Forbidden(format!(
                "Site {caller} did not receive migration {id}"
            )));
        }
        if let Some(t) = &source.tunnel {
            self.close_source_tunnel(t.vni).await?;
        }
        let mut job = job.clone();
        if let crate::migration::jobs::JobSide::Source(s) = &mut job.side {
            s.tunnel = None;
        }
        if job.source().is_some_and(|s| s.phase.is_terminal()) {
            self.store
                .remove_job(id.as_str())
                .map_err(ManagerError::Store)?;
        } else {
            self.store.put_job(&job).map_err(ManagerError::Store)?;
        }
        self.sync_leases();
        Ok(())
    }

    fn set_handoff(&self, id: &MigrationId, status: &HandoffStatus) {
        let _ = self.update_destination(id, |d| d.handoff = Some(status.clone()));
    }

    /// Destination side: runs the handoff of a VM that just resumed here
    /// (or resumes it after a restart, from its persisted stage).
    pub(crate) fn start_handoff(self: &Arc<Self>, id: MigrationId, vm: &str, live: &Live) {
        let Ok(record) = self.record(vm) else { return };
        let Ok(Some(job)) = self.store.job(id.as_str()) else {
            return;
        };
        let Some(dest) = job.destination() else {
            return;
        };
        let resumed = dest.phase.resumed_at_unix_us().unwrap_or(0);
        let Some(next) = record.next_address else {
            // The VM came back to the site its address belongs to.
            self.set_handoff(
                &id,
                &HandoffStatus {
                    state: "home".into(),
                    old_address: format!("{}/{}", record.address, record.prefix_len),
                    new_address: format!("{}/{}", record.address, record.prefix_len),
                    ..HandoffStatus::default()
                },
            );
            let _ = self.end_destination(
                &id,
                DestinationPhase::Done {
                    resumed_at_unix_us: resumed,
                },
            );
            return;
        };
        let net = &self.config.vm_network;
        let status = dest.handoff.clone().unwrap_or_else(|| HandoffStatus {
            state: "pending".into(),
            old_address: format!("{}/{}", record.address, record.prefix_len),
            new_address: format!("{next}/{}", net.subnet.prefix_len()),
            ..HandoffStatus::default()
        });
        if let Some(reason) = &dest.skip_handoff {
            let kept = HandoffStatus {
                state: reason.clone(),
                ..status
            };
            self.set_handoff(&id, &kept);
            let _ = self.end_destination(
                &id,
                DestinationPhase::Done {
                    resumed_at_unix_us: resumed,
                },
            );
            tracing::info!(%id, vm, reason = %reason, "no handoff: the old address stays behind the tunnel");
            return;
        }
        self.set_handoff(&id, &status);
        let manager = self.clone();
        let live = live.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let mut status = status;
            if let Err(reason) = manager
                .handoff(&id, &live, &record, &mut status, started)
                .await
            {
                tracing::warn!(%id, vm = %record.name, %reason, "network handoff not possible; the old address stays reachable through the tunnel");
                status.state = format!("not_possible: {reason}");
            }
            manager.set_handoff(&id, &status);
            let resumed = manager
                .store
                .job(id.as_str())
                .ok()
                .flatten()
                .and_then(|j| j.destination().and_then(|d| d.phase.resumed_at_unix_us()))
                .unwrap_or(0);
            let _ = manager.end_destination(
                &id,
                DestinationPhase::Done {
                    resumed_at_unix_us: resumed,
                },
            );
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
        id: &MigrationId,
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
                mac: nic_mac(&live.guest, record, active),
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
                mac: nic_mac(&live.guest, record, other),
                address: status.new_address.clone(),
                gateway: net.gateway().to_string(),
            },
        )
        .await?;
        status.state = "announced".into();
        status.announced_ms = Some(ms(started));
        self.set_handoff(id, status);
        tracing::info!(%id, vm = %record.name, new = %status.new_address, "new address announced");

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
        let mut last_announce = announced;
        let mut can_reannounce = true;
        loop {
            tokio::time::sleep(POLL).await;
            let (on_old, moved, mptcp_on_old) =
                match self.guest_nic(live, GuestRequest::NetStatus).await {
                    Ok(GuestReply::Net(n)) => {
                        let (on_old, moved) = old_and_moved(&n, &old_ip, &new_ip);
                        (on_old, moved, mptcp_only_on(&n, &old_ip))
                    }
                    _ => (0, 0, 0),
                };
            status.moved = moved;
            status.on_old = on_old;
            let settled = announced.elapsed() >= SETTLE;
            if (settled && status.on_old == 0) || announced.elapsed() >= grace {
                break;
            }
            if can_reannounce
                && mptcp_on_old > 0
                && last_announce.elapsed() >= REANNOUNCE_AFTER
                && status.reannounced < MAX_REANNOUNCES
            {
                let again = GuestRequest::NicReannounce {
                    nic: format!("eth{other}"),
                    mac: nic_mac(&live.guest, record, other),
                    address: status.new_address.clone(),
                };
                match self.guest_nic(live, again).await {
                    Ok(_) => {
                        status.reannounced += 1;
                        last_announce = Instant::now();
                        self.set_handoff(id, status);
                        tracing::info!(%id, vm = %record.name, mptcp_on_old, times = status.reannounced, "new address announced again");
                    }
                    Err(e) => {
                        can_reannounce = false;
                        tracing::warn!(%id, vm = %record.name, error = %e, "the guest cannot announce the new address again");
                    }
                }
            }
        }
        self.guest_nic(
            live,
            GuestRequest::NicRetire {
                nic: format!("eth{active}"),
                mac: nic_mac(&live.guest, record, active),
            },
        )
        .await?;
        let _ = live.qmp.set_link(&qemu::nic_id(active), false).await;
        let (vxlan, bridge) = record.tunnel_names();
        let _ = self.netdev.delete(&vxlan).await;
        let _ = self.netdev.delete(&bridge).await;
        if let Err(e) = self.close_peer_tunnel(id).await {
            tracing::warn!(%id, vm = %record.name, error = %e, "cannot close the tunnel at the old site");
        }
        if let Ok(mut r) = self.record(&record.name) {
            r.active_nic = other;
            r.address = record.next_address.unwrap_or(r.address);
            r.prefix_len = net.subnet.prefix_len();
            r.gateway = Some(net.gateway());
            r.next_address = None;
            let _ = self.store.put(&r);
        }
        self.sync_leases();
        status.retired_ms = Some(ms(started));
        status.state = if announced.elapsed() >= grace && status.on_old > 0 {
            "timeout".into()
        } else {
            "done".into()
        };
        tracing::info!(%id, vm = %record.name, moved = status.moved, on_old = status.on_old, "old address retired");
        Ok(())
    }

    /// Destination: asks the source of migration `id` to close its tunnel.
    async fn close_peer_tunnel(&self, id: &MigrationId) -> Result<(), String> {
        let job = self
            .store
            .job(id.as_str())
            .map_err(|e| e.to_string())?
            .ok_or("the migration's record is gone")?;
        let dest = job.destination().ok_or("not a destination record")?;
        let client = self
            .peer_client_for(&dest.from)
            .map_err(|e| crate::http::chain(&e))?;
        let _: serde_json::Value = client
            .request_json(
                Method::POST,
                &format!("/v1/peer/migrations/{id}/tunnel/close"),
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

    use super::{mptcp_only_on, old_and_moved};

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
            mptcp_counters: vec![],
        };
        assert_eq!(old_and_moved(&n, "10.10.0.2", "10.20.0.2"), (1, 1));
        // A protocol-1 guest: per-address socket counts only.
        let old = NetReport {
            by_address: vec![("10.10.0.2".into(), 3), ("10.20.0.2".into(), 1)],
            connections: vec![],
            connections_total: 0,
            sole_address: vec![],
            mptcp_counters: vec![],
        };
        assert_eq!(old_and_moved(&old, "10.10.0.2", "10.20.0.2"), (2, 1));
    }

    #[test]
    fn only_mptcp_connections_left_on_the_old_address_call_for_another_announcement() {
        let plain = ConnectionInfo {
            mptcp: false,
            ..conn(&["10.10.0.2"])
        };
        let n = NetReport {
            by_address: vec![("10.10.0.2".into(), 4), ("10.20.0.2".into(), 1)],
            connections: vec![
                conn(&["10.10.0.2", "10.20.0.2"]),
                conn(&["10.10.0.2"]),
                conn(&["10.10.0.2"]),
                plain,
            ],
            connections_total: 4,
            sole_address: vec![("10.10.0.2".into(), 3)],
            mptcp_counters: vec![],
        };
        assert_eq!(mptcp_only_on(&n, "10.10.0.2"), 2);
        assert_eq!(mptcp_only_on(&n, "10.20.0.2"), 0);
    }
}
