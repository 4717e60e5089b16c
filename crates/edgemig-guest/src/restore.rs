//! Taking back, at agent start, the NIC configuration an earlier run of
//! the agent applied ([`Store`]): nothing is torn down; a NIC whose
//! address is still there is left alone, one that lost it (someone
//! flushed it while the agent was away) gets its configuration again
//! (`NicUp`, idempotent). `NicUp` also moves the main default route, so
//! when anything was configured again the last NIC applied is confirmed
//! once more at the end: the default route stays where the host last put
//! it.

use std::sync::{Arc, Mutex};

use crate::net::link::{self, NicRef};
use crate::net::nic;
use crate::net::ops::{self, Cidr};
use crate::net::rtnl::Rtnl;
use crate::state::Store;

/// What happened to one saved NIC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NicRestore {
    /// Its address is still there: left alone.
    Kept(String),
    /// Its address was gone: configured again.
    Reapplied(String),
    /// It could not be checked or configured; the text says why.
    Failed(String, String),
}

/// Checks every saved NIC (see the module docs), holding `net` (the
/// network-change lock).
pub fn restore_nics(store: &Store, net: &Arc<Mutex<()>>) -> Vec<NicRestore> {
    let _guard = net
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let saved = store.snapshot().nics;
    let mut out = Vec::new();
    for n in saved {
        let target = NicRef {
            name: &n.nic,
            mac: n.mac,
        };
        let present = (|| {
            let cidr: Cidr = n.address.parse().map_err(|e: String| e)?;
            let mut rtnl = Rtnl::open().map_err(|e| e.to_string())?;
            let l = link::resolve(&mut rtnl, target).map_err(|e| e.to_string())?;
            let addrs = ops::addresses(&mut rtnl, l.index).map_err(|e| e.to_string())?;
            Ok::<bool, String>(addrs.contains(&cidr))
        })();
        let result = match present {
            Ok(true) => NicRestore::Kept(n.nic.clone()),
            Ok(false) => match nic::nic_up(target, &n.address, &n.gateway) {
                Ok(_) => NicRestore::Reapplied(n.nic.clone()),
                Err(e) => NicRestore::Failed(n.nic.clone(), crate::handler::error_chain(&e)),
            },
            Err(e) => NicRestore::Failed(n.nic.clone(), e),
        };
        match &result {
            NicRestore::Kept(nic) => {
                eprintln!("edgemig-guest: {nic} keeps {} via {}", n.address, n.gateway)
            }
            NicRestore::Reapplied(nic) => eprintln!(
                "edgemig-guest: {nic} had lost {}; configured again",
                n.address
            ),
            NicRestore::Failed(nic, why) => {
                eprintln!("edgemig-guest: cannot restore {nic}: {why}")
            }
        }
        out.push(result);
    }
    let reapplied = out.iter().any(|r| matches!(r, NicRestore::Reapplied(_)));
    if reapplied && let Some(last) = saved_last(store) {
        let target = NicRef {
            name: &last.nic,
            mac: last.mac,
        };
        if let Err(e) = nic::nic_up(target, &last.address, &last.gateway) {
            eprintln!(
                "edgemig-guest: cannot confirm {}: {}",
                last.nic,
                crate::handler::error_chain(&e)
            );
        }
    }
    out
}

fn saved_last(store: &Store) -> Option<crate::state::SavedNic> {
    store.snapshot().nics.pop()
}
