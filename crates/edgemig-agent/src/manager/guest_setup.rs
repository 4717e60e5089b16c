//! What the host tells a guest agent each time it starts: a VM booting its
//! own disk has no address on a kernel command line, so its agent learns
//! the address of the active NIC from the host once it reports ready (at
//! boot, and again after the agent restarts inside the guest).

use std::sync::Arc;
use std::time::Duration;

use edgemig_api::VmState;
use edgemig_guest_proto::mptcp_apps::MptcpScope;
use edgemig_guest_proto::{GuestReply, GuestRequest};

use super::Manager;
use crate::guest_channel::GuestChannel;
use crate::vm::VmRecord;

/// The MAC of the VM's NIC `index`, for a guest that takes NICs by MAC
/// (protocol 3): it names the interface whatever the distribution calls
/// it. `None` for older guests, which know the NICs as `eth0` / `eth1`.
pub(crate) fn nic_mac(
    guest: &GuestChannel,
    record: &VmRecord,
    index: u8,
) -> Option<edgemig_guest_proto::MacAddr> {
    guest
        .agent()
        .filter(|a| a.protocol >= 3)
        .and_then(|_| record.mac(index).parse().ok())
}

/// Limit of one set-up request.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts to configure the guest's NIC, and the pause between them.
const NIC_ATTEMPTS: u32 = 15;
const NIC_RETRY: Duration = Duration::from_secs(2);

impl Manager {
    /// Configures the guest of VM `name` each time its agent starts, for as
    /// long as `guest` is open.
    pub(crate) fn watch_guest_starts(self: &Arc<Self>, name: &str, guest: &GuestChannel) {
        let manager = Arc::downgrade(self);
        let guest = guest.clone();
        let name = name.to_string();
        let mut starts = guest.starts();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    changed = starts.changed() => if changed.is_err() { return },
                    () = guest.closed() => return,
                }
                let Some(manager) = manager.upgrade() else {
                    return;
                };
                manager.configure_guest(&name, &guest).await;
            }
        });
    }

    /// Sends the active NIC's address to the guest of a running VM that
    /// boots its own disk, and the VM's MPTCP scope for applications.
    async fn configure_guest(&self, name: &str, guest: &GuestChannel) {
        let Ok(record) = self.record(name) else {
            return;
        };
        if record.state != VmState::Running {
            return;
        }
        self.send_mptcp_apps(name, guest, &record).await;
        if record.is_builtin() {
            return;
        }
        let active = record.active_nic.min(1);
        let request = GuestRequest::NicUp {
            nic: format!("eth{active}"),
            mac: nic_mac(guest, &record, active),
            address: format!("{}/{}", record.address, record.prefix_len),
            gateway: record
                .gateway
                .unwrap_or_else(|| self.config.vm_network.gateway())
                .to_string(),
        };
        // The guest agent may be up before the NIC's driver is (udev loads
        // both): a NIC it cannot find yet is asked for again.
        for attempt in 1..=NIC_ATTEMPTS {
            match guest.request(request.clone(), SETUP_TIMEOUT).await {
                Ok(_) => {
                    tracing::info!(vm = name, address = %record.address, "guest network configured");
                    return;
                }
                Err(error) if attempt < NIC_ATTEMPTS && !guest.is_closed() => {
                    tracing::debug!(vm = name, attempt, error = %crate::http::chain(&error), "guest network not configured yet");
                    tokio::time::sleep(NIC_RETRY).await;
                }
                Err(error) => {
                    tracing::warn!(vm = name, error = %crate::http::chain(&error), "cannot configure the guest's network");
                    return;
                }
            }
        }
    }

    /// Tells a guest that speaks protocol 3 which applications get MPTCP
    /// (the built-in guest only when asked for some).
    pub(crate) async fn send_mptcp_apps(
        &self,
        name: &str,
        guest: &GuestChannel,
        record: &VmRecord,
    ) -> Option<Result<GuestReply, String>> {
        let protocol = guest.agent().map_or(0, |a| a.protocol);
        let off = record.mptcp_apps == MptcpScope::Off;
        if protocol < 3 || (off && record.is_builtin()) {
            return None;
        }
        let request = GuestRequest::MptcpApps {
            scope: record.mptcp_apps.clone(),
            restart: false,
        };
        let sent = guest
            .request(request, SETUP_TIMEOUT)
            .await
            .map_err(|e| crate::http::chain(&e));
        match &sent {
            Ok(_) => tracing::info!(vm = name, scope = ?record.mptcp_apps, "guest MPTCP scope set"),
            Err(error) => tracing::warn!(vm = name, %error, "cannot set the guest's MPTCP scope"),
        }
        Some(sent)
    }
}
