//! The two maps of the mptcpify program ([`crate::program`]) and the
//! [`Scope`] they encode: the config array (the mode) and the cgroups
//! hash (the ids of the cgroups whose sockets become MPTCP).

use std::collections::BTreeSet;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use crate::program::{MODE_ALL, MODE_CGROUPS, MODE_OFF};
use crate::sys;

/// Most cgroups a [`Scope::Cgroups`] may hold.
pub const MAX_CGROUPS: usize = 1024;

/// Which sockets become MPTCP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every `socket(AF_INET | AF_INET6, SOCK_STREAM, 0 | IPPROTO_TCP)` of
    /// every process.
    All,
    /// Only those created by tasks in these cgroups (v2 ids, see
    /// [`crate::cgroup::cgroup_id`]) or in cgroups below them. Empty:
    /// none.
    Cgroups(BTreeSet<u64>),
}

impl Scope {
    /// No socket at all (the hook stays attached but changes nothing).
    pub fn none() -> Self {
        Self::Cgroups(BTreeSet::new())
    }
}

/// Errors reading or writing the maps.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    /// A map operation failed.
    #[error("BPF map {op} failed")]
    Bpf {
        /// What was attempted.
        op: &'static str,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// More cgroups than the map holds.
    #[error("{count} cgroups given, at most {MAX_CGROUPS} are supported")]
    TooManyCgroups {
        /// How many were given.
        count: usize,
    },
    /// The config map holds a mode this version does not know (a pin of
    /// another version).
    #[error("Unknown mptcpify mode {0} in the config map")]
    UnknownMode(u32),
}

fn bpf_err(op: &'static str) -> impl FnOnce(io::Error) -> MapError {
    move |source| MapError::Bpf { op, source }
}

/// The program's maps.
#[derive(Debug)]
pub struct Maps {
    /// Array of one `u32`: the mode.
    pub(crate) config: OwnedFd,
    /// Hash `u64` cgroup id → `u8` 1.
    pub(crate) cgroups: OwnedFd,
}

/// Key of the mode in the config map.
const CONFIG_KEY: [u8; 4] = 0u32.to_ne_bytes();

impl Maps {
    /// Creates both maps; the mode starts as [`MODE_OFF`].
    pub fn create() -> Result<Self, MapError> {
        let config = sys::map_create(sys::MAP_ARRAY, 4, 4, 1, "em_mptcp_cfg")
            .map_err(bpf_err("create (config)"))?;
        let cgroups = sys::map_create(sys::MAP_HASH, 8, 1, MAX_CGROUPS as u32, "em_mptcp_cgrp")
            .map_err(bpf_err("create (cgroups)"))?;
        Ok(Self { config, cgroups })
    }

    /// Maps opened from elsewhere (pins).
    pub(crate) fn from_fds(config: OwnedFd, cgroups: OwnedFd) -> Self {
        Self { config, cgroups }
    }

    fn set_mode(&self, mode: u32) -> Result<(), MapError> {
        sys::map_update(
            self.config.as_raw_fd(),
            &CONFIG_KEY,
            &mode.to_ne_bytes(),
            sys::UPDATE_ANY,
        )
        .map_err(bpf_err("update (mode)"))
    }

    fn mode(&self) -> Result<u32, MapError> {
        let mut v = [0u8; 4];
        sys::map_lookup(self.config.as_raw_fd(), &CONFIG_KEY, &mut v)
            .map_err(bpf_err("lookup (mode)"))?;
        Ok(u32::from_ne_bytes(v))
    }

    /// The cgroup ids in the map.
    pub fn cgroups(&self) -> Result<BTreeSet<u64>, MapError> {
        let fd = self.cgroups.as_raw_fd();
        let mut ids = BTreeSet::new();
        let mut cur: Option<[u8; 8]> = None;
        let mut next = [0u8; 8];
        // Bounded: a map never holds more than MAX_CGROUPS keys, even if
        // keys change while it is walked.
        for _ in 0..=MAX_CGROUPS * 2 {
            let more = sys::map_next_key(fd, cur.as_ref().map(|k| &k[..]), &mut next)
                .map_err(bpf_err("next key (cgroups)"))?;
            if !more {
                break;
            }
            ids.insert(u64::from_ne_bytes(next));
            cur = Some(next);
        }
        Ok(ids)
    }

    /// Writes `scope`. Narrowing is ordered so that no socket in the new
    /// scope is missed meanwhile: new ids first, then the mode, then the
    /// stale ids go.
    pub fn set_scope(&self, scope: &Scope) -> Result<(), MapError> {
        let fd = self.cgroups.as_raw_fd();
        let old = self.cgroups()?;
        let keep = match scope {
            Scope::All => BTreeSet::new(),
            Scope::Cgroups(ids) => {
                if ids.len() > MAX_CGROUPS {
                    return Err(MapError::TooManyCgroups { count: ids.len() });
                }
                for id in ids.difference(&old) {
                    sys::map_update(fd, &id.to_ne_bytes(), &[1], sys::UPDATE_ANY)
                        .map_err(bpf_err("update (cgroups)"))?;
                }
                ids.clone()
            }
        };
        self.set_mode(match scope {
            Scope::All => MODE_ALL,
            Scope::Cgroups(_) => MODE_CGROUPS,
        })?;
        for id in old.difference(&keep) {
            match sys::map_delete(fd, &id.to_ne_bytes()) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(bpf_err("delete (cgroups)")(e)),
            }
        }
        Ok(())
    }

    /// The scope the maps hold now ([`MODE_OFF`] reads as no cgroups).
    pub fn scope(&self) -> Result<Scope, MapError> {
        match self.mode()? {
            MODE_ALL => Ok(Scope::All),
            MODE_CGROUPS => Ok(Scope::Cgroups(self.cgroups()?)),
            MODE_OFF => Ok(Scope::none()),
            other => Err(MapError::UnknownMode(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_round_trips_through_the_maps() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root");
            return;
        }
        let maps = Maps::create().unwrap();
        assert_eq!(maps.scope().unwrap(), Scope::none());
        let a: BTreeSet<u64> = [3, 5, 7].into();
        maps.set_scope(&Scope::Cgroups(a.clone())).unwrap();
        assert_eq!(maps.scope().unwrap(), Scope::Cgroups(a));
        let b: BTreeSet<u64> = [5, 11].into();
        maps.set_scope(&Scope::Cgroups(b.clone())).unwrap();
        assert_eq!(maps.scope().unwrap(), Scope::Cgroups(b));
        maps.set_scope(&Scope::All).unwrap();
        assert_eq!(maps.scope().unwrap(), Scope::All);
        assert!(maps.cgroups().unwrap().is_empty());
        let too_many: BTreeSet<u64> = (1..=MAX_CGROUPS as u64 + 1).collect();
        assert!(matches!(
            maps.set_scope(&Scope::Cgroups(too_many)),
            Err(MapError::TooManyCgroups { .. })
        ));
        assert_eq!(
            maps.scope().unwrap(),
            Scope::All,
            "a refused scope changes nothing"
        );
    }
}
