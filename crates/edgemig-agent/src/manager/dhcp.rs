//! The site's DHCP server (crate `edgemig-dhcp`) for VMs that configure
//! their NIC themselves (images without edgemig's guest agent): its table
//! is derived from the store whenever a VM's addresses change, so it always
//! answers each NIC with the address the agent assigned it on this site's
//! network, including a departed VM's old address while its tunnel is open.

use edgemig_dhcp::{Lease, MacAddr};

use super::Manager;

impl Manager {
    /// The leases the site's VM network answers for, from the store.
    pub(crate) fn leases_from_store(&self) -> Vec<(MacAddr, Lease)> {
        let net = &self.config.vm_network;
        let lease = |mac: &str, address, prefix| {
            let mac = mac.parse::<MacAddr>().ok()?;
            let lease = Lease::new(address, prefix, net.gateway()).ok()?;
            Some((mac, lease))
        };
        let mut out = Vec::new();
        for r in self.store.all().unwrap_or_default() {
            let active = r.active_nic.min(1);
            if net.subnet.contains(&r.address) && r.state != edgemig_api::VmState::Incoming {
                out.extend(lease(&r.mac(active), r.address, r.prefix_len));
            }
            if let Some(next) = r.next_address {
                out.extend(lease(&r.mac(1 - active), next, net.subnet.prefix_len()));
            }
        }
        for job in self.store.jobs().unwrap_or_default() {
            if let Some(t) = job.source().and_then(|s| s.tunnel.as_ref())
                && net.subnet.contains(&t.address)
            {
                out.extend(lease(&t.mac, t.address, net.subnet.prefix_len()));
            }
        }
        out
    }

    /// Brings the DHCP server's table in line with the store.
    pub(crate) fn sync_leases(&self) {
        self.leases.replace_all(self.leases_from_store());
    }
}
