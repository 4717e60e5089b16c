//! Scoring: the weighted mean RTT each site would give the VM's clients,
//! and its gain over the current site.
//!
//! `mean_rtt_ms(site) = Σ wᵢ·rttᵢ(site) / Σ wᵢ` over the clients with a
//! weight above zero. Missing samples are explicit: a site that lacks the
//! RTT of any such client has no score and is not a candidate (its
//! [`Exclusion::MissingSamples`] names the clients); averaging over the
//! clients it happens to know would favour sites that know only the
//! nearby clients. A site other than the current one without a
//! [`crate::CostEstimate`] is not a candidate either
//! ([`Exclusion::NoCostEstimate`]): the move's cost could not be weighed.
//!
//! `gain(site) = (mean(current) - mean(site)) / mean(current)`; it is
//! absent when either mean is, or when the current mean is 0 ms (nothing
//! to gain). Ties between candidates go to the smaller site name, so the
//! choice never depends on iteration order.

use crate::observation::Observation;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::BTreeMap;

/// How many missing clients an exclusion names (the count is complete).
pub const MISSING_NAMED: usize = 3;

/// Why a site is not a candidate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Exclusion {
    /// No RTT sample for some weighted clients.
    MissingSamples {
        /// How many clients lack a sample.
        count: usize,
        /// The first [`MISSING_NAMED`] of them, sorted.
        clients: Vec<String>,
    },
    /// No migration cost estimate to this site.
    NoCostEstimate,
}

/// One site's score in a decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteScore {
    /// Site name.
    pub site: String,
    /// Whether the VM runs there.
    pub current: bool,
    /// Weighted mean RTT to the clients, ms; absent if a sample is missing.
    pub mean_rtt_ms: Option<f64>,
    /// Relative gain over the current site (0.25 = 25 % lower RTT;
    /// negative = worse).
    pub gain: Option<f64>,
    /// Estimated transfer time of a migration there, s.
    pub transfer_s: Option<f64>,
    /// Why it is not a candidate, if it is not.
    pub excluded: Option<Exclusion>,
}

/// All sites' scores for one observation.
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    /// Per site, sorted by name.
    pub sites: Vec<SiteScore>,
    /// Clients with a weight above zero.
    pub weighted_clients: usize,
}

impl Scores {
    /// Score every site of `obs` (assumed valid).
    pub fn of(obs: &Observation) -> Scores {
        let weighted: Vec<_> = obs.clients.iter().filter(|c| c.weight > 0.0).collect();
        let total_weight: f64 = weighted.iter().map(|c| c.weight).sum();
        let mut means: BTreeMap<&str, Result<f64, Vec<&str>>> = BTreeMap::new();
        for site in obs.sites() {
            let mut sum = 0.0;
            let mut missing = Vec::new();
            for c in &weighted {
                match c.rtt_ms_by_site.get(site) {
                    Some(rtt) => sum += c.weight * rtt,
                    None => missing.push(c.client.as_str()),
                }
            }
            let mean = if !missing.is_empty() {
                Err(missing)
            } else if total_weight > 0.0 {
                Ok(sum / total_weight)
            } else {
                Err(Vec::new())
            };
            means.insert(site, mean);
        }
        let current_mean = means
            .get(obs.current_site.as_str())
            .and_then(|m| m.as_ref().ok().copied());
        let sites = means
            .into_iter()
            .map(|(site, mean)| {
                let current = site == obs.current_site;
                let cost = obs.migration_cost.get(site);
                let mean_rtt_ms = mean.as_ref().ok().copied();
                let gain = match (current_mean, mean_rtt_ms) {
                    (Some(cur), Some(m)) if cur > 0.0 => Some((cur - m) / cur),
                    _ => None,
                };
                let excluded = match mean {
                    Err(missing) if !missing.is_empty() => {
                        let mut clients: Vec<String> =
                            missing.iter().map(|c| (*c).to_owned()).collect();
                        clients.sort();
                        let count = clients.len();
                        clients.truncate(MISSING_NAMED);
                        Some(Exclusion::MissingSamples { count, clients })
                    }
                    _ if !current && cost.is_none() => Some(Exclusion::NoCostEstimate),
                    _ => None,
                };
                SiteScore {
                    site: site.to_owned(),
                    current,
                    mean_rtt_ms,
                    gain,
                    transfer_s: if current {
                        None
                    } else {
                        cost.map(|c| c.transfer_s())
                    },
                    excluded,
                }
            })
            .collect();
        Scores {
            sites,
            weighted_clients: weighted.len(),
        }
    }

    /// The current site's score.
    pub fn current(&self) -> Option<&SiteScore> {
        self.sites.iter().find(|s| s.current)
    }

    /// The candidate with the lowest mean RTT (ties: smaller name).
    pub fn best_candidate(&self) -> Option<&SiteScore> {
        self.sites
            .iter()
            .filter(|s| !s.current && s.excluded.is_none())
            .filter_map(|s| s.mean_rtt_ms.map(|m| (m, s)))
            .min_by(|(a, sa), (b, sb)| match a.total_cmp(b) {
                Ordering::Equal => sa.site.cmp(&sb.site),
                o => o,
            })
            .map(|(_, s)| s)
    }
}

#[cfg(test)]
#[path = "score_tests.rs"]
mod tests;
