//! One static lease: the address the agent assigned to a VM's NIC, its
//! network, and how long a client may use it before renewing.

use std::net::Ipv4Addr;
use std::num::NonZeroU32;

/// Errors of lease construction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    /// The prefix length leaves no room for a gateway and a client.
    #[error("Prefix length /{0} is not usable for a VM network (1 to 30)")]
    PrefixLen(u8),
    /// The gateway is not in the address's network.
    #[error("Gateway {gateway} is outside {address}/{prefix_len}")]
    GatewayOutside {
        /// Client address.
        address: Ipv4Addr,
        /// Prefix length.
        prefix_len: u8,
        /// Gateway.
        gateway: Ipv4Addr,
    },
    /// An address is not a host address of its network (network or
    /// broadcast address, multicast, loopback, unspecified).
    #[error("{0} is not a host address of its network")]
    NotHost(Ipv4Addr),
    /// The client address is the gateway's.
    #[error("Address {0} is the gateway's")]
    IsGateway(Ipv4Addr),
    /// The lease time is out of range.
    #[error(
        "Lease time of {0} s is out of range ({min} s to {max} s)",
        min = LeaseTime::MIN_SECS,
        max = LeaseTime::MAX_SECS
    )]
    LeaseTime(u32),
    /// Too many DNS servers.
    #[error("{0} DNS servers given, at most {max} fit", max = Lease::MAX_DNS)]
    TooManyDns(usize),
}

/// How long a client may use its address without renewing (DHCP option
/// 51), in seconds. Renewal (T1) is at half of it, rebinding (T2) at 7/8,
/// the RFC 2131 defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct LeaseTime(NonZeroU32);

impl LeaseTime {
    /// Shortest lease accepted: a client renews at T1 = 30 s.
    pub const MIN_SECS: u32 = 60;
    /// Longest lease accepted: one week. (Infinite leases, `0xffffffff`,
    /// are not offered: an address follows a VM, and a VM moves.)
    pub const MAX_SECS: u32 = 7 * 24 * 3600;
    /// The default, 10 minutes (`docs/dhcp.md`): a guest renews every 5
    /// minutes, which costs nothing, and a guest whose site stopped
    /// answering for it (the VM moved, the lease was removed) gives the
    /// address up within 10 minutes instead of hours.
    pub const DEFAULT: LeaseTime = match NonZeroU32::new(600) {
        Some(secs) => LeaseTime(secs),
        None => unreachable!(),
    };

    /// A lease time of `secs` seconds, [`Self::MIN_SECS`] to
    /// [`Self::MAX_SECS`].
    pub fn from_secs(secs: u32) -> Result<Self, LeaseError> {
        match NonZeroU32::new(secs) {
            Some(n) if (Self::MIN_SECS..=Self::MAX_SECS).contains(&secs) => Ok(Self(n)),
            _ => Err(LeaseError::LeaseTime(secs)),
        }
    }

    /// The lease time in seconds.
    pub fn secs(self) -> u32 {
        self.0.get()
    }

    /// Renewal time T1 (option 58): half the lease.
    pub fn renewal_secs(self) -> u32 {
        self.secs() / 2
    }

    /// Rebinding time T2 (option 59): 7/8 of the lease.
    pub fn rebinding_secs(self) -> u32 {
        u32::try_from(u64::from(self.secs()) * 7 / 8).unwrap_or(u32::MAX)
    }
}

impl Default for LeaseTime {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// What the server tells one client (one MAC address): its address, the
/// network's mask and router, the lease time and the DNS servers. Built
/// only through [`Lease::new`], so every lease in the table is consistent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    address: Ipv4Addr,
    prefix_len: u8,
    gateway: Ipv4Addr,
    lease_time: LeaseTime,
    dns: Vec<Ipv4Addr>,
}

fn mask(prefix_len: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(prefix_len))
        .unwrap_or(0)
}

/// Whether `ip` is a usable host address of the /`prefix_len` it is in.
fn is_host(ip: Ipv4Addr, prefix_len: u8) -> bool {
    let bits = u32::from(ip);
    let host = bits & !mask(prefix_len);
    !(ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_loopback()
        || host == 0
        || host == !mask(prefix_len))
}

impl Lease {
    /// Most DNS servers a lease carries.
    pub const MAX_DNS: usize = 8;

    /// A lease of `address`/`prefix_len` with router `gateway`, the
    /// default lease time and no DNS servers. The gateway must be in the
    /// same network, and both must be host addresses of it.
    pub fn new(address: Ipv4Addr, prefix_len: u8, gateway: Ipv4Addr) -> Result<Self, LeaseError> {
        if !(1..=30).contains(&prefix_len) {
            return Err(LeaseError::PrefixLen(prefix_len));
        }
        let m = mask(prefix_len);
        if u32::from(address) & m != u32::from(gateway) & m {
            return Err(LeaseError::GatewayOutside {
                address,
                prefix_len,
                gateway,
            });
        }
        for ip in [address, gateway] {
            if !is_host(ip, prefix_len) {
                return Err(LeaseError::NotHost(ip));
            }
        }
        if address == gateway {
            return Err(LeaseError::IsGateway(address));
        }
        Ok(Self {
            address,
            prefix_len,
            gateway,
            lease_time: LeaseTime::DEFAULT,
            dns: Vec::new(),
        })
    }

    /// The same lease with lease time `lease_time`.
    #[must_use]
    pub fn with_lease_time(mut self, lease_time: LeaseTime) -> Self {
        self.lease_time = lease_time;
        self
    }

    /// The same lease announcing these DNS servers (option 6), at most
    /// [`Self::MAX_DNS`].
    pub fn with_dns(mut self, servers: Vec<Ipv4Addr>) -> Result<Self, LeaseError> {
        if servers.len() > Self::MAX_DNS {
            return Err(LeaseError::TooManyDns(servers.len()));
        }
        self.dns = servers;
        Ok(self)
    }

    /// The client's address.
    pub fn address(&self) -> Ipv4Addr {
        self.address
    }

    /// Prefix length of the client's network.
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// The network's mask (option 1).
    pub fn subnet_mask(&self) -> Ipv4Addr {
        Ipv4Addr::from(mask(self.prefix_len))
    }

    /// The router (option 3).
    pub fn gateway(&self) -> Ipv4Addr {
        self.gateway
    }

    /// The lease time (options 51, 58, 59).
    pub fn lease_time(&self) -> LeaseTime {
        self.lease_time
    }

    /// DNS servers (option 6; none by default).
    pub fn dns(&self) -> &[Ipv4Addr] {
        &self.dns
    }

    /// Whether `ip` is in this lease's network.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let m = mask(self.prefix_len);
        u32::from(ip) & m == u32::from(self.address) & m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn a_valid_lease_carries_its_network() {
        let lease = Lease::new(ip("10.10.0.7"), 24, ip("10.10.0.1")).unwrap();
        assert_eq!(lease.subnet_mask(), ip("255.255.255.0"));
        assert_eq!(lease.lease_time(), LeaseTime::DEFAULT);
        assert!(lease.dns().is_empty());
        assert!(lease.contains(ip("10.10.0.200")));
        assert!(!lease.contains(ip("10.10.1.7")));
        let small = Lease::new(ip("10.10.0.6"), 30, ip("10.10.0.5")).unwrap();
        assert_eq!(small.subnet_mask(), ip("255.255.255.252"));
        let wide = Lease::new(ip("10.200.3.4"), 1, ip("10.0.0.1")).unwrap();
        assert_eq!(wide.subnet_mask(), ip("128.0.0.0"));
    }

    #[test]
    fn inconsistent_leases_are_refused() {
        let gw = ip("10.10.0.1");
        assert_eq!(
            Lease::new(ip("10.10.0.7"), 0, gw),
            Err(LeaseError::PrefixLen(0))
        );
        assert_eq!(
            Lease::new(ip("10.10.0.7"), 31, gw),
            Err(LeaseError::PrefixLen(31))
        );
        assert!(matches!(
            Lease::new(ip("10.10.1.7"), 24, gw),
            Err(LeaseError::GatewayOutside { .. })
        ));
        assert_eq!(
            Lease::new(ip("10.10.0.0"), 24, gw),
            Err(LeaseError::NotHost(ip("10.10.0.0")))
        );
        assert_eq!(
            Lease::new(ip("10.10.0.255"), 24, gw),
            Err(LeaseError::NotHost(ip("10.10.0.255")))
        );
        assert_eq!(
            Lease::new(ip("10.10.0.7"), 24, ip("10.10.0.255")),
            Err(LeaseError::NotHost(ip("10.10.0.255")))
        );
        assert_eq!(Lease::new(gw, 24, gw), Err(LeaseError::IsGateway(gw)));
        assert!(Lease::new(ip("127.0.0.2"), 8, ip("127.0.0.1")).is_err());
        assert!(Lease::new(ip("224.0.0.2"), 24, ip("224.0.0.1")).is_err());
    }

    #[test]
    fn lease_times() {
        let t = LeaseTime::from_secs(3600).unwrap();
        assert_eq!((t.renewal_secs(), t.rebinding_secs()), (1800, 3150));
        let d = LeaseTime::DEFAULT;
        assert_eq!(
            (d.secs(), d.renewal_secs(), d.rebinding_secs()),
            (600, 300, 525)
        );
        let max = LeaseTime::from_secs(LeaseTime::MAX_SECS).unwrap();
        assert!(max.rebinding_secs() < max.secs());
        for bad in [0, 59, LeaseTime::MAX_SECS + 1, u32::MAX] {
            assert_eq!(LeaseTime::from_secs(bad), Err(LeaseError::LeaseTime(bad)));
        }
    }

    #[test]
    fn dns_servers_are_bounded() {
        let lease = Lease::new(ip("10.10.0.7"), 24, ip("10.10.0.1")).unwrap();
        let one = lease.clone().with_dns(vec![ip("10.10.0.1")]).unwrap();
        assert_eq!(one.dns(), &[ip("10.10.0.1")]);
        assert_eq!(
            lease.with_dns(vec![ip("1.1.1.1"); 9]),
            Err(LeaseError::TooManyDns(9))
        );
    }
}
