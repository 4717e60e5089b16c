//! What the host tells a guest agent each time it starts: a VM booting its
//! own disk has no address on a kernel command line, so its agent learns
//! the address of the active NIC from the host once it reports ready (at
//! boot, and again after the agent restarts inside the guest).

use std::sync::Arc;
use std::time::Duration;

use edgemig_api::VmState;
use edgemig_guest_proto::GuestRequest;

use super::Manager;
use crate::guest_channel::GuestChannel;

/// Limit of one set-up request.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

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
    /// boots its own disk.
    async fn configure_guest(&self, name: &str, guest: &GuestChannel) {
        let Ok(record) = self.record(name) else {
            return;
        };
        if record.state != VmState::Running || record.is_builtin() {
            return;
        }
        let active = record.active_nic.min(1);
        let request = GuestRequest::NicUp {
            nic: format!("eth{active}"),
            address: format!("{}/{}", record.address, record.prefix_len),
            gateway: record
                .gateway
                .unwrap_or_else(|| self.config.vm_network.gateway())
                .to_string(),
        };
        match guest.request(request, SETUP_TIMEOUT).await {
            Ok(_) => {
                tracing::info!(vm = name, address = %record.address, "guest network configured")
            }
            Err(error) => {
                tracing::warn!(vm = name, error = %crate::http::chain(&error), "cannot configure the guest's network")
            }
        }
    }
}
