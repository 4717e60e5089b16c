//! Property-style tests for [`super`]: seeded pseudo-random traces, and
//! invariants checked against an independent recomputation.
//!
//! Invariants: never more than `max_per_hour` policy migrations in any
//! sliding hour; never a migration to the current site; never a migration
//! without a full hold during which, at every observation, the target was
//! the best complete candidate with a gain of at least `min_gain`.

use super::*;
use crate::observation::CostEstimate;
use crate::testtrace::{Rng, Step, client, play};
use std::collections::BTreeMap;

const SEEDS: u64 = 150;
const STEPS: usize = 400;

/// A random trace: 2-4 sites, 1-3 clients whose RTTs random-walk (with
/// occasional jumps and missing samples), random sampling periods and a
/// random valid policy that is sometimes replaced.
fn random_trace(seed: u64) -> (Vec<Step>, String) {
    let mut rng = Rng::new(seed);
    let sites: Vec<String> = (0..2 + rng.below(3)).map(|i| format!("s{i}")).collect();
    let n_clients = 1 + rng.below(3) as usize;
    let mut rtt: Vec<Vec<f64>> = (0..n_clients)
        .map(|_| sites.iter().map(|_| rng.range(2.0, 80.0)).collect())
        .collect();
    let weights: Vec<f64> = (0..n_clients)
        .map(|_| rng.range(0.0, 4.0).floor())
        .collect();
    let random_policy = |rng: &mut Rng| FollowPolicy {
        min_gain: rng.range(0.05, 0.6),
        hold_ms: rng.below(6) * 5_000,
        max_per_hour: 1 + rng.below(6) as u32,
        return_cooldown_ms: rng.below(4) * 300_000,
        return_gain_factor: rng.range(1.0, 3.0),
        amortisation_ms: 60_000 + rng.below(20) * 60_000,
    };
    let mut policy = random_policy(&mut rng);
    let cost: BTreeMap<String, CostEstimate> = sites
        .iter()
        .map(|s| {
            (
                s.clone(),
                CostEstimate {
                    bytes: (1 + rng.below(16)) << 28,
                    path_mbit: rng.range(10.0, 2000.0),
                },
            )
        })
        .collect();
    let mut t = 0;
    let mut steps = Vec::with_capacity(STEPS);
    for _ in 0..STEPS {
        t += 1_000 + rng.below(14_000);
        if rng.below(100) == 0 {
            policy = random_policy(&mut rng);
        }
        for row in &mut rtt {
            for r in row.iter_mut() {
                *r = if rng.below(50) == 0 {
                    rng.range(2.0, 80.0)
                } else {
                    (*r + rng.range(-3.0, 3.0)).clamp(1.0, 120.0)
                };
            }
        }
        let clients = rtt
            .iter()
            .enumerate()
            .map(|(i, row)| {
                let rtts: Vec<(&str, f64)> = sites
                    .iter()
                    .zip(row)
                    .filter(|_| rng.below(40) != 0)
                    .map(|(s, r)| (s.as_str(), *r))
                    .collect();
                client(&format!("c{i}"), weights[i], &rtts)
            })
            .collect();
        steps.push(Step {
            at_ms: t,
            clients,
            cost: cost.clone(),
            policy: policy.clone(),
            migrating: false,
            external_move_to: None,
        });
    }
    let start = sites[rng.below(sites.len() as u64) as usize].clone();
    (steps, start)
}

/// Independent recomputation: the best complete candidate and its gain,
/// if the current site is measured and there is weight.
fn reference_best(step: &Step, current: &str) -> Option<(String, f64)> {
    let weighted: Vec<_> = step.clients.iter().filter(|c| c.weight > 0.0).collect();
    let total: f64 = weighted.iter().map(|c| c.weight).sum();
    if total == 0.0 {
        return None;
    }
    let mean = |site: &str| -> Option<f64> {
        weighted
            .iter()
            .map(|c| c.rtt_ms_by_site.get(site).map(|r| r * c.weight))
            .sum::<Option<f64>>()
            .map(|s| s / total)
    };
    let cur = mean(current)?;
    let mut best: Option<(String, f64)> = None;
    for site in step.cost.keys().filter(|s| s.as_str() != current) {
        if let Some(m) = mean(site)
            && best.as_ref().is_none_or(|(_, b)| m < *b)
        {
            best = Some((site.clone(), m));
        }
    }
    best.map(|(s, m)| (s, (cur - m) / cur))
}

#[test]
fn invariants_hold_on_random_traces() {
    let mut total_moves = 0;
    for seed in 0..SEEDS {
        let (steps, start) = random_trace(seed);
        let mut f = Follower::new();
        let (decisions, _) = play(&mut f, &steps, start.clone());
        let mut site = start;
        let mut sites_before = Vec::with_capacity(steps.len());
        let mut move_times = Vec::new();
        for d in &decisions {
            sites_before.push(site.clone());
            assert_eq!(d.current_site, site, "seed {seed}");
            if let Action::Migrate { to } = &d.action {
                assert_ne!(to, &site, "seed {seed}: migrate to the current site");
                move_times.push((d.at_ms, d.policy.max_per_hour));
                site = to.clone();
            }
        }
        total_moves += move_times.len();

        // Cap: with the cap in force at the last move, no window of one
        // hour holds more than max_per_hour moves ending there.
        for (j, &(t, max)) in move_times.iter().enumerate() {
            let in_window = move_times[..=j]
                .iter()
                .filter(|(u, _)| t - u < CAP_WINDOW_MS)
                .count();
            assert!(
                in_window <= max as usize,
                "seed {seed}: {in_window} > {max} at {t}"
            );
        }

        // Hold: every observation in [t - hold, t] had the target best
        // with gain >= min_gain, and one such run reaches back to t - hold.
        for (i, d) in decisions.iter().enumerate() {
            let Action::Migrate { to } = &d.action else {
                continue;
            };
            let hold = d.policy.hold_ms;
            let min_gain = d.policy.min_gain;
            let mut earliest = d.at_ms;
            for k in (0..=i).rev() {
                let ok = sites_before[k] == d.current_site
                    && reference_best(&steps[k], &sites_before[k])
                        .is_some_and(|(s, g)| &s == to && g >= min_gain);
                if !ok {
                    break;
                }
                earliest = steps[k].at_ms;
                if d.at_ms - earliest >= hold {
                    break;
                }
            }
            assert!(
                d.at_ms - earliest >= hold,
                "seed {seed}: move at {} to {to} held only since {earliest} (hold {hold})",
                d.at_ms
            );
        }
    }
    // The traces are not all trivially still.
    assert!(total_moves > SEEDS as usize / 2, "only {total_moves} moves");
}
