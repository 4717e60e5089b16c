//! The decision's inputs at one instant: [`Observation`].
//!
//! The guest agent reports the VM's active clients (address, weight, and
//! the RTT it measures from the current site); each site agent probes the
//! clients' addresses and estimates the RTT it would give them. The agent
//! merges both into one observation per decision tick. A site missing from
//! a client's `rtt_ms_by_site` means "no sample"; it is never guessed.
//!
//! Both agents are rate-limited and bounded; this component enforces the
//! bounds again ([`MAX_CLIENTS`], [`MAX_SITES`]) so that a decision's size
//! is bounded whatever it is fed.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Most clients one observation may carry (the guest agent keeps the
/// heaviest ones).
pub const MAX_CLIENTS: usize = 256;
/// Most sites one observation may mention.
pub const MAX_SITES: usize = 64;

/// Why an observation is rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ObservationError {
    /// Empty current site name.
    #[error("Current site is empty")]
    NoCurrentSite,
    /// More clients than [`MAX_CLIENTS`].
    #[error("{0} clients exceed the limit of {MAX_CLIENTS}")]
    TooManyClients(usize),
    /// More distinct sites than [`MAX_SITES`].
    #[error("{0} sites exceed the limit of {MAX_SITES}")]
    TooManySites(usize),
    /// A weight that is negative or not finite.
    #[error("Client {client:?} has weight {weight}, expected a finite number >= 0")]
    Weight {
        /// Client address.
        client: String,
        /// The offending weight.
        weight: f64,
    },
    /// An RTT that is negative or not finite.
    #[error(
        "Client {client:?} has RTT {rtt_ms} ms to site {site:?}, expected a finite number >= 0"
    )]
    Rtt {
        /// Client address.
        client: String,
        /// Site name.
        site: String,
        /// The offending RTT.
        rtt_ms: f64,
    },
    /// The same client twice.
    #[error("Client {0:?} appears twice")]
    DuplicateClient(String),
    /// A path bandwidth that is not a positive finite number.
    #[error("Path to site {site:?} has bandwidth {path_mbit} Mbit/s, expected a finite number > 0")]
    PathBandwidth {
        /// Site name.
        site: String,
        /// The offending bandwidth.
        path_mbit: f64,
    },
}

/// One client of the VM and the RTT each site would give it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSample {
    /// The client's address (as the guest sees it).
    pub client: String,
    /// How much this client counts (e.g. bytes exchanged, or 1.0 per
    /// client); zero-weight clients are ignored.
    #[serde(default = "one")]
    pub weight: f64,
    /// Estimated RTT in ms from each site to this client; the current
    /// site's may be the guest's own measurement.
    pub rtt_ms_by_site: BTreeMap<String, f64>,
}

fn one() -> f64 {
    1.0
}

/// What moving the VM to a site would cost: the bytes to send over the
/// measured path.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CostEstimate {
    /// Estimated bytes (memory plus dirty disk) the migration sends.
    pub bytes: u64,
    /// Measured aggregate bandwidth of the path(s) to the site, Mbit/s.
    pub path_mbit: f64,
}

impl CostEstimate {
    /// Estimated transfer time: `bytes × 8 / (path_mbit × 10⁶)` seconds.
    pub fn transfer_s(&self) -> f64 {
        self.bytes as f64 * 8.0 / (self.path_mbit * 1e6)
    }
}

/// Everything one decision looks at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Observation {
    /// When, in ms on the agent's monotonic clock.
    pub at_ms: u64,
    /// Where the VM runs now.
    pub current_site: String,
    /// True while a migration of this VM is running (whoever started it):
    /// no decision is made and no hold runs meanwhile.
    #[serde(default)]
    pub migration_in_progress: bool,
    /// The VM's active clients.
    pub clients: Vec<ClientSample>,
    /// Cost of moving to each other site; a site without an estimate is
    /// not a candidate.
    #[serde(default)]
    pub migration_cost: BTreeMap<String, CostEstimate>,
}

impl Observation {
    /// Check bounds and numbers; a rejected observation leads to "stay".
    pub fn validate(&self) -> Result<(), ObservationError> {
        if self.current_site.is_empty() {
            return Err(ObservationError::NoCurrentSite);
        }
        if self.clients.len() > MAX_CLIENTS {
            return Err(ObservationError::TooManyClients(self.clients.len()));
        }
        let mut seen = std::collections::BTreeSet::new();
        for c in &self.clients {
            if !seen.insert(c.client.as_str()) {
                return Err(ObservationError::DuplicateClient(c.client.clone()));
            }
            if !(c.weight.is_finite() && c.weight >= 0.0) {
                return Err(ObservationError::Weight {
                    client: c.client.clone(),
                    weight: c.weight,
                });
            }
            if let Some((site, &rtt_ms)) = c
                .rtt_ms_by_site
                .iter()
                .find(|(_, r)| !(r.is_finite() && **r >= 0.0))
            {
                return Err(ObservationError::Rtt {
                    client: c.client.clone(),
                    site: site.clone(),
                    rtt_ms,
                });
            }
        }
        if let Some((site, cost)) = self
            .migration_cost
            .iter()
            .find(|(_, c)| !(c.path_mbit.is_finite() && c.path_mbit > 0.0))
        {
            return Err(ObservationError::PathBandwidth {
                site: site.clone(),
                path_mbit: cost.path_mbit,
            });
        }
        let sites = self.sites().len();
        if sites > MAX_SITES {
            return Err(ObservationError::TooManySites(sites));
        }
        Ok(())
    }

    /// Every site mentioned (current, in any client sample, or with a cost
    /// estimate), sorted by name.
    pub fn sites(&self) -> std::collections::BTreeSet<&str> {
        let mut s = std::collections::BTreeSet::new();
        s.insert(self.current_site.as_str());
        for c in &self.clients {
            s.extend(c.rtt_ms_by_site.keys().map(String::as_str));
        }
        s.extend(self.migration_cost.keys().map(String::as_str));
        s
    }
}

#[cfg(test)]
#[path = "observation_tests.rs"]
mod tests;
