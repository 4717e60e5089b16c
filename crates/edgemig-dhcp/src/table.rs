//! The lease table the host agent shares with the server: MAC → lease,
//! read by the server for every message and changed by the agent at any
//! time (a VM created, moved or removed). A change applies to the next
//! message the server handles.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use crate::lease::Lease;
use crate::mac::MacAddr;

/// Static leases by client MAC address. Cloning gives another handle to
/// the same table. Locks are held only to copy one entry in or out, never
/// across an `await`.
#[derive(Debug, Clone, Default)]
pub struct LeaseTable {
    inner: Arc<RwLock<HashMap<MacAddr, Lease>>>,
}

impl LeaseTable {
    /// An empty table: the server answers nobody.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the lease of `mac`, returning the one it replaces.
    pub fn insert(&self, mac: MacAddr, lease: Lease) -> Option<Lease> {
        self.write(|map| map.insert(mac, lease))
    }

    /// Removes the lease of `mac`: from now on the server ignores it.
    pub fn remove(&self, mac: &MacAddr) -> Option<Lease> {
        self.write(|map| map.remove(mac))
    }

    /// The lease of `mac`, if any.
    pub fn get(&self, mac: &MacAddr) -> Option<Lease> {
        self.inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(mac)
            .cloned()
    }

    /// Replaces the whole table at once (the agent's view after a restart).
    pub fn replace_all(&self, leases: impl IntoIterator<Item = (MacAddr, Lease)>) {
        let fresh: HashMap<MacAddr, Lease> = leases.into_iter().collect();
        self.write(|map| *map = fresh);
    }

    /// All leases, ordered by MAC address.
    pub fn snapshot(&self) -> Vec<(MacAddr, Lease)> {
        let mut all: Vec<_> = self
            .inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(mac, lease)| (*mac, lease.clone()))
            .collect();
        all.sort_by_key(|(mac, _)| *mac);
        all
    }

    /// Number of leases.
    pub fn len(&self) -> usize {
        self.inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn write<T>(&self, f: impl FnOnce(&mut HashMap<MacAddr, Lease>) -> T) -> T {
        f(&mut self.inner.write().unwrap_or_else(PoisonError::into_inner))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn lease(last: u8) -> Lease {
        Lease::new(
            Ipv4Addr::new(10, 10, 0, last),
            24,
            Ipv4Addr::new(10, 10, 0, 1),
        )
        .unwrap()
    }

    #[test]
    fn handles_share_one_table() {
        let table = LeaseTable::new();
        let agent = table.clone();
        let a = MacAddr::new([0x52, 0x54, 0, 0, 0, 2]);
        let b = MacAddr::new([0x52, 0x54, 0, 0, 0, 1]);
        assert!(table.is_empty());
        assert_eq!(agent.insert(a, lease(2)), None);
        assert_eq!(table.get(&a), Some(lease(2)));
        assert_eq!(agent.insert(a, lease(3)), Some(lease(2)));
        assert_eq!(table.get(&a), Some(lease(3)));
        agent.insert(b, lease(4));
        assert_eq!(
            table.snapshot(),
            vec![(b, lease(4)), (a, lease(3))],
            "ordered by MAC"
        );
        assert_eq!(agent.remove(&a), Some(lease(3)));
        assert_eq!(table.get(&a), None);
        agent.replace_all([(a, lease(9))]);
        assert_eq!(table.len(), 1);
        assert_eq!(table.get(&b), None);
        assert_eq!(table.get(&a), Some(lease(9)));
    }
}
