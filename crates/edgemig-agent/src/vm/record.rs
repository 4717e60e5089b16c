//! The persistent record of one VM and the values derived from it.

use std::net::Ipv4Addr;

use edgemig_api::VmState;
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use super::disks::{Boot, DiskRole, VmDisk};

/// What the store keeps about one VM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmRecord {
    /// Unique name at this site.
    pub name: String,
    /// Small number unique at this site, used for TAP names.
    pub id: u32,
    /// Random 24 bits of the VM's MAC addresses, chosen at creation and kept
    /// when the VM migrates (the guest must keep its MACs).
    pub mac_seed: u32,
    /// Guest RAM in MiB.
    pub memory_mib: u64,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// Data disk size in MiB.
    pub disk_mib: Option<u64>,
    /// Digest of the cached base image under the data disk, if any.
    #[serde(default)]
    pub base_digest: Option<String>,
    /// What the VM boots: the built-in guest or a root disk.
    #[serde(default)]
    pub boot: Boot,
    /// Which of the guest's applications get MPTCP (sent to the guest
    /// agent each time it starts).
    #[serde(default)]
    pub mptcp_apps: edgemig_guest_proto::mptcp_apps::MptcpScope,
    /// The VM's current address (on its active NIC).
    pub address: Ipv4Addr,
    /// Prefix length of `address`'s network.
    #[serde(default = "default_prefix")]
    pub prefix_len: u8,
    /// Gateway of `address`'s network.
    #[serde(default)]
    pub gateway: Option<Ipv4Addr>,
    /// The NIC that carries `address` (0 or 1); the other one is the
    /// handoff NIC of the next migration.
    #[serde(default)]
    pub active_nic: u8,
    /// At a migration destination: the address at this site the VM moves to.
    #[serde(default)]
    pub next_address: Option<Ipv4Addr>,
    /// The `follow` policy and its decision state, when set.
    #[serde(default)]
    pub follow: Option<edgemig_api::policy::FollowState>,
    /// Last known lifecycle state.
    pub state: VmState,
    /// QEMU pid while running.
    pub pid: Option<u32>,
}

fn default_prefix() -> u8 {
    24
}

impl VmRecord {
    /// The VM's disks, root first.
    pub fn disks(&self) -> Vec<VmDisk> {
        let mut out = Vec::new();
        if let Boot::Disk {
            root_mib, image, ..
        } = &self.boot
        {
            out.push(VmDisk {
                role: DiskRole::Root,
                mib: *root_mib,
                base: image.clone(),
            });
        }
        if let Some(mib) = self.disk_mib {
            out.push(VmDisk {
                role: DiskRole::Data,
                mib,
                base: self.base_digest.clone(),
            });
        }
        out
    }

    /// Whether the VM boots the built-in guest.
    pub fn is_builtin(&self) -> bool {
        self.boot == Boot::Builtin
    }

    /// VXLAN network id of the tunnel that keeps this VM's old address
    /// reachable after a migration (from its MAC seed).
    pub fn vni(&self) -> u32 {
        (self.mac_seed & 0x00ff_ffff).max(1)
    }

    /// Names of the tunnel's VXLAN device and bridge at either site.
    pub fn tunnel_names(&self) -> (String, String) {
        (
            format!("emvx{:06x}", self.vni()),
            format!("emtb{:06x}", self.vni()),
        )
    }

    /// TAP device of NIC `index` (0 or 1).
    pub fn tap_name(&self, index: u8) -> String {
        format!("emv{}n{index}", self.id)
    }

    /// MAC address of NIC `index`: QEMU's locally administered prefix, the
    /// NIC index, then the VM's MAC seed.
    pub fn mac(&self, index: u8) -> String {
        self.mac_bytes(index).map(|b| format!("{b:02x}")).join(":")
    }

    /// The six bytes of [`VmRecord::mac`].
    pub fn mac_bytes(&self, index: u8) -> [u8; 6] {
        let [_, a, b, c] = self.mac_seed.to_be_bytes();
        [0x52, 0x54, index, a, b, c]
    }
}

/// A random 24-bit MAC seed (std's hasher keys come from the OS's
/// randomness).
pub fn random_mac_seed() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    (h.finish() & 0x00ff_ffff) as u32
}

/// Whether `name` is a valid VM or site name: 1–32 of `[a-z0-9-]`, starting
/// with a letter, not ending with `-`.
pub fn is_valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 32
        && bytes[0].is_ascii_lowercase()
        && !name.ends_with('-')
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

/// The lowest host address of `subnet` that is neither the gateway nor in
/// `taken`.
pub fn allocate_address(
    subnet: Ipv4Net,
    gateway: Ipv4Addr,
    taken: &[Ipv4Addr],
) -> Option<Ipv4Addr> {
    subnet.hosts().find(|a| *a != gateway && !taken.contains(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_valid_name("vm1"));
        assert!(is_valid_name("web-01"));
        for bad in ["", "1vm", "Vm", "vm_1", "vm-", &"a".repeat(33), "a b"] {
            assert!(!is_valid_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn derived_names_fit_linux_limits() {
        let r = VmRecord {
            name: "x".into(),
            id: u32::MAX,
            mac_seed: 0x00ff_ffff,
            memory_mib: 1,
            vcpus: 1,
            disk_mib: None,
            base_digest: None,
            boot: Boot::Builtin,
            mptcp_apps: Default::default(),
            address: Ipv4Addr::LOCALHOST,
            prefix_len: 24,
            gateway: None,
            active_nic: 0,
            next_address: None,
            follow: None,
            state: VmState::Stopped,
            pid: None,
        };
        assert!(r.tap_name(1).len() <= 15);
        assert_eq!(r.mac(1), "52:54:01:ff:ff:ff");
    }

    #[test]
    fn allocation_skips_gateway_and_taken() {
        let net: Ipv4Net = "10.10.0.0/29".parse().unwrap();
        let gw = Ipv4Addr::new(10, 10, 0, 1);
        assert_eq!(
            allocate_address(net, gw, &[]),
            Some(Ipv4Addr::new(10, 10, 0, 2))
        );
        let taken: Vec<_> = (2..=6).map(|i| Ipv4Addr::new(10, 10, 0, i)).collect();
        assert_eq!(allocate_address(net, gw, &taken), None);
    }
}
