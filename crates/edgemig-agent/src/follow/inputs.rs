//! The inputs of one follow decision: which clients use the VM (from the
//! guest agent's connection list), how far each site is from each of them
//! (probes from this site and, over the peer API, from every peer site),
//! and what moving the VM would cost.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use axum::http::Method;
use edgemig_api::peer::PeerImageStatus;
use edgemig_api::policy::{MAX_PROBE_TARGETS, ProbeReply, ProbeRequest};
use edgemig_guest_proto::{GuestReply, GuestRequest, NetReport};
use edgemig_pki::PeerClient;
use edgemig_policy::{ClientSample, CostEstimate};

use super::probe;
use crate::manager::Manager;
use crate::vm::VmRecord;

/// Most clients one decision weighs (the busiest ones).
pub const MAX_CLIENTS: usize = 32;
/// Limit of one guest or peer request of the controller.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Path bandwidth assumed when the site config gives none, Mbit/s.
const DEFAULT_PATH_MBIT: f64 = 100.0;

/// The distinct client addresses of the VM's connections, busiest first.
pub fn clients(report: &NetReport) -> Vec<IpAddr> {
    let mut by_client: BTreeMap<IpAddr, u64> = BTreeMap::new();
    for c in &report.connections {
        if let Ok(ip) = c.remote.parse::<IpAddr>() {
            *by_client.entry(ip).or_default() += c.bytes;
        }
    }
    let mut clients: Vec<(IpAddr, u64)> = by_client.into_iter().collect();
    clients.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    clients.truncate(MAX_CLIENTS.min(MAX_PROBE_TARGETS));
    clients.into_iter().map(|(ip, _)| ip).collect()
}

impl Manager {
    /// The guest's connections (its agent's view).
    pub(crate) async fn guest_connections(&self, vm: &str) -> Result<NetReport, String> {
        let live = self
            .live
            .lock()
            .await
            .get(vm)
            .cloned()
            .ok_or("VM not running here")?;
        match live
            .guest
            .request(GuestRequest::NetStatus, REQUEST_TIMEOUT)
            .await
        {
            Ok(GuestReply::Net(report)) => Ok(report),
            Ok(other) => Err(format!("unexpected guest reply {other:?}")),
            Err(e) => Err(format!("guest agent: {}", crate::http::chain(&e))),
        }
    }

    /// RTT from every known site (this one and its peers) to every client:
    /// one [`ClientSample`] per client with the sites that answered.
    pub(crate) async fn site_distances(&self, clients: &[IpAddr]) -> Vec<ClientSample> {
        let mut by_site: Vec<(String, Vec<Option<f64>>)> =
            vec![(self.config.site.clone(), probe::probe_all(clients).await)];
        let request = ProbeRequest {
            targets: clients.to_vec(),
        };
        let asks = self.config.peers.iter().map(|peer| {
            let request = &request;
            async move {
                let tls = self.peer_tls()?;
                let client = PeerClient::new(&tls, peer.address, &peer.site).ok()?;
                let reply: ProbeReply = client
                    .request_json(Method::POST, "/v1/peer/probe", Some(request), REQUEST_TIMEOUT)
                    .await
                    .map_err(|e| {
                        tracing::debug!(site = %peer.site, error = %crate::http::chain(&e), "probe request failed");
                    })
                    .ok()?;
                Some((peer.site.clone(), reply.rtt_ms))
            }
        });
        by_site.extend(
            futures_util::future::join_all(asks)
                .await
                .into_iter()
                .flatten(),
        );
        clients
            .iter()
            .enumerate()
            .map(|(i, ip)| ClientSample {
                client: ip.to_string(),
                weight: 1.0,
                rtt_ms_by_site: by_site
                    .iter()
                    .filter_map(|(site, rtts)| Some((site.clone(), (*rtts.get(i)?)?)))
                    .collect(),
            })
            .collect()
    }

    /// What moving `record` to each peer site would cost: its memory, the
    /// top layer of each of its disks, and each cached image under a disk
    /// that the peer does not hold (the whole disk travels then). A peer
    /// that cannot be asked is taken to hold nothing.
    pub(crate) async fn migration_costs(
        &self,
        record: &VmRecord,
    ) -> BTreeMap<String, CostEstimate> {
        let files = self.files(&record.name);
        let disks = record.disks();
        let own: u64 = disks
            .iter()
            .map(|d| crate::images::allocated_bytes(&files.disk(d.role)))
            .sum();
        let images: Vec<(String, u64)> = disks
            .iter()
            .filter_map(|d| d.base.clone())
            .filter_map(|digest| {
                let cached = self.images.get(&digest)?;
                Some((digest, crate::images::allocated_bytes(&cached.path)))
            })
            .collect();
        let mbit: f64 = self
            .config
            .migration_path_mbit
            .iter()
            .map(|m| *m as f64)
            .sum();
        let path_mbit = if mbit > 0.0 { mbit } else { DEFAULT_PATH_MBIT };
        let mut costs = BTreeMap::new();
        for peer in &self.config.peers {
            let mut bytes = (record.memory_mib << 20) + own;
            for (digest, image_bytes) in &images {
                if !self.peer_holds_image(&peer.site, digest).await {
                    bytes += image_bytes;
                }
            }
            costs.insert(peer.site.clone(), CostEstimate { bytes, path_mbit });
        }
        costs
    }

    /// Whether site `site` has image `digest` in its cache (false when it
    /// cannot be asked).
    async fn peer_holds_image(&self, site: &str, digest: &str) -> bool {
        let Ok(client) = self.peer_client_for(site) else {
            return false;
        };
        let path = format!("/v1/peer/images/{digest}");
        match client
            .request_json::<_, PeerImageStatus>(Method::GET, &path, None::<&()>, REQUEST_TIMEOUT)
            .await
        {
            Ok(status) => status.present,
            Err(e) => {
                tracing::debug!(site, digest, error = %crate::http::chain(&e), "cannot ask a peer for an image; counting it");
                false
            }
        }
    }
}
