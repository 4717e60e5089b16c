//! Tests for [`super`]: recorded-style and synthetic traces through the
//! whole rule chain.

use super::*;
use crate::observation::CostEstimate;
use crate::testtrace::{Trace, client, moves, observation, phase, play, run, trace};

fn policy(min_gain: f64, hold_ms: u64) -> FollowPolicy {
    FollowPolicy {
        min_gain,
        hold_ms,
        ..FollowPolicy::default()
    }
}

/// One client, RTTs per site.
fn one(rtts: &[(&str, f64)]) -> Vec<crate::ClientSample> {
    vec![client("c1", 1.0, rtts)]
}

/// Every migration happened after `hold_ms` of uninterrupted holding on
/// the same site, visible in the decisions before it.
fn assert_each_move_held(decisions: &[Decision]) {
    for (i, d) in decisions.iter().enumerate() {
        let Reason::Migrate { site, held_ms, .. } = &d.reason else {
            continue;
        };
        assert!(*held_ms >= d.policy.hold_ms, "{d}");
        let since = d.at_ms - held_ms;
        for prev in decisions[..i].iter().rev().take_while(|p| p.at_ms >= since) {
            assert!(
                matches!(&prev.reason, Reason::Holding { site: s, since_ms, .. } if s == site && *since_ms == since),
                "not holding before the move at {}: {prev}",
                d.at_ms
            );
        }
    }
}

fn check_file(name: &str) {
    let t = Trace::load(name);
    let (decisions, _) = run(&t);
    assert_eq!(moves(&decisions), t.expect.migrations, "trace {}", t.name);
    assert_each_move_held(&decisions);
}

#[test]
fn commuting_client_follows_after_each_hold() {
    check_file("commuting");
    let (d, site) = run(&Trace::load("commuting"));
    assert_eq!(site, "c");
    // The in-between phase was judged and rejected, not missed.
    assert!(d.iter().any(|d| matches!(
        &d.reason,
        Reason::GainBelowMinimum { site, .. } if site == "b"
    )));
}

#[test]
fn flapping_link_never_moves() {
    check_file("flapping");
    let (d, _) = run(&Trace::load("flapping"));
    // It kept starting holds towards b and never finished one.
    assert!(d.iter().any(|d| matches!(d.reason, Reason::Holding { .. })));
    assert!(d.iter().all(|d| !d.is_migrate()));
}

#[test]
fn opposite_clients_with_equal_weights_stay() {
    check_file("tug_of_war_equal");
    let (d, _) = run(&Trace::load("tug_of_war_equal"));
    let last = d.last().unwrap();
    assert!(matches!(
        &last.reason,
        Reason::GainBelowMinimum { site, .. } if site == "m"
    ));
}

#[test]
fn opposite_clients_with_unequal_weights_go_to_the_heavy_side() {
    check_file("tug_of_war_heavy");
    let (d, _) = run(&Trace::load("tug_of_war_heavy"));
    assert!(matches!(d.last().unwrap().reason, Reason::CurrentIsBest));
}

#[test]
fn replaced_policy_applies_from_then_on() {
    check_file("policy_replaced");
    let (d, _) = run(&Trace::load("policy_replaced"));
    assert!(matches!(
        d[0].reason,
        Reason::GainBelowMinimum { min_gain, .. } if min_gain == 0.5
    ));
    assert_eq!(d[12].policy.min_gain, 0.3);
}

#[test]
fn lengthened_hold_mid_hold_delays_the_move() {
    let p = policy(0.3, 20_000);
    let mut t = trace(
        "a",
        p,
        5_000,
        vec![phase(10_000, one(&[("a", 50.0), ("b", 10.0)]))],
    );
    let mut longer = phase(200_000, one(&[("a", 50.0), ("b", 10.0)]));
    longer.policy = Some(policy(0.3, 60_000));
    t.segments.push(crate::testtrace::Segment::Phase(longer));
    let (d, _) = run(&t);
    // The hold started at 0 and keeps its start under the new policy.
    assert_eq!(
        moves(&d).iter().map(|m| m.at_ms).collect::<Vec<_>>(),
        [60_000]
    );
}

#[test]
fn raised_min_gain_mid_hold_restarts_the_hold() {
    // b gains 40 % at first, then 60 %; at 15 s the policy asks for 50 %:
    // the run so far (40 %) does not count, the hold restarts at 15 s.
    let mut t = trace(
        "a",
        policy(0.3, 20_000),
        5_000,
        vec![phase(15_000, one(&[("a", 50.0), ("b", 30.0)]))],
    );
    let mut raised = phase(100_000, one(&[("a", 50.0), ("b", 20.0)]));
    raised.policy = Some(policy(0.5, 20_000));
    t.segments.push(crate::testtrace::Segment::Phase(raised));
    let (d, _) = run(&t);
    assert!(
        matches!(
            d[3].reason,
            Reason::Holding {
                since_ms: 15_000,
                ..
            }
        ),
        "{}",
        d[3]
    );
    assert_eq!(
        moves(&d).iter().map(|m| m.at_ms).collect::<Vec<_>>(),
        [35_000]
    );
    // Lowering it instead keeps the hold.
    let mut t = trace(
        "a",
        policy(0.3, 20_000),
        5_000,
        vec![phase(15_000, one(&[("a", 50.0), ("b", 30.0)]))],
    );
    let mut lowered = phase(100_000, one(&[("a", 50.0), ("b", 30.0)]));
    lowered.policy = Some(policy(0.2, 20_000));
    t.segments.push(crate::testtrace::Segment::Phase(lowered));
    assert_eq!(
        moves(&run(&t).0)
            .iter()
            .map(|m| m.at_ms)
            .collect::<Vec<_>>(),
        [20_000]
    );
}

#[test]
fn no_ping_pong_after_a_move() {
    let p = FollowPolicy::default(); // 30 %, 20 s, return within 10 min needs 60 %
    let t = trace(
        "a",
        p,
        5_000,
        vec![
            phase(60_000, one(&[("a", 50.0), ("b", 10.0)])),
            // a is now 40 % better than b: enough for a new site, not for
            // going back within 10 minutes.
            phase(900_000, one(&[("a", 30.0), ("b", 50.0)])),
        ],
    );
    let (d, _) = run(&t);
    let m = moves(&d);
    assert_eq!(m.len(), 2, "{m:?}");
    assert_eq!((m[0].at_ms, m[0].to.as_str()), (20_000, "b"));
    // Guarded until the cool-down (10 min after 20 s) ends, then a normal
    // hold of 20 s.
    assert_eq!((m[1].at_ms, m[1].to.as_str()), (620_000 + 20_000, "a"));
    let guarded = d
        .iter()
        .filter(|d| {
            matches!(
                d.reason,
                Reason::PingPongGuard {
                    left_at_ms: 20_000,
                    ..
                }
            )
        })
        .count();
    assert_eq!(guarded, (620_000 - 60_000) / 5_000);
    assert!(
        d.iter()
            .find(|d| matches!(d.reason, Reason::PingPongGuard { .. }))
            .unwrap()
            .to_string()
            .contains("going back needs 60%")
    );
}

#[test]
fn a_large_gain_may_go_back_within_the_cool_down() {
    let t = trace(
        "a",
        FollowPolicy::default(),
        5_000,
        vec![
            phase(60_000, one(&[("a", 50.0), ("b", 10.0)])),
            phase(120_000, one(&[("a", 10.0), ("b", 50.0)])), // 80 % >= 60 %
        ],
    );
    let m = moves(&run(&t).0);
    assert_eq!(
        m.iter()
            .map(|m| (m.at_ms, m.to.as_str()))
            .collect::<Vec<_>>(),
        [(20_000, "b"), (80_000, "a")]
    );
}

#[test]
fn hourly_cap_limits_moves_in_any_sliding_hour() {
    // Four sites take turns being best every 2 minutes; no cool-down so
    // only the cap limits the moves.
    let p = FollowPolicy {
        max_per_hour: 3,
        return_cooldown_ms: 0,
        ..FollowPolicy::default()
    };
    let sites = ["a", "b", "c", "d"];
    let phases: Vec<_> = (0..60)
        .map(|i| {
            let best = sites[(i + 1) % 4];
            let rtts: Vec<_> = sites
                .iter()
                .map(|s| (*s, if *s == best { 10.0 } else { 50.0 }))
                .collect();
            phase(120_000, one(&rtts))
        })
        .collect();
    let (d, _) = run(&trace("a", p, 5_000, phases));
    let at: Vec<u64> = moves(&d).iter().map(|m| m.at_ms).collect();
    // 3 moves in the first hour (at 20 s, 2:20, 4:20, the last to d);
    // the first leaves the window at 1:00:20, when d (where the VM is) is
    // best again; the next phase (a best from 1:02:00) moves it at 1:02:20.
    assert_eq!(&at[..4], [20_000, 140_000, 260_000, 3_740_000]);
    for w in at.windows(4) {
        assert!(w[3] - w[0] >= 3_600_000, "{at:?}");
    }
    let capped = d
        .iter()
        .find(|d| matches!(d.reason, Reason::CapReached { .. }))
        .unwrap();
    assert!(matches!(
        capped.reason,
        Reason::CapReached {
            migrations: 3,
            max_per_hour: 3,
            next_slot_ms: 3_620_000,
            ..
        }
    ));
    assert!(capped.to_string().contains("3 of 3 migrations per hour"));
}

fn with_cost(bytes: u64, path_mbit: f64) -> Trace {
    let mut t = trace(
        "a",
        FollowPolicy::default(),
        5_000,
        vec![phase(120_000, one(&[("a", 50.0), ("b", 10.0)]))],
    );
    t.cost.insert("b".into(), CostEstimate { bytes, path_mbit });
    t
}

#[test]
fn huge_vm_over_a_slow_path_stays() {
    // 64 GiB over 10 Mbit/s: ~15 h of transfer, longer than the horizon.
    let t = with_cost(64 << 30, 10.0);
    let mut f = Follower::new();
    let (d, _) = play(&mut f, &t.steps(), "a".into());
    assert!(d.iter().all(|d| !d.is_migrate()));
    let last = d.last().unwrap();
    let Reason::CostTooHigh {
        transfer_s,
        effective_gain,
        ..
    } = last.reason
    else {
        panic!("{last}");
    };
    assert!((transfer_s - 54_975.6).abs() < 0.1, "{transfer_s}");
    assert_eq!(effective_gain, 0.0);
    // The hold keeps running: the gain was there all along.
    assert_eq!(f.pending().map(|p| p.since_ms), Some(0));

    // 8 GiB over 100 Mbit/s: 687 s of 900 s leaves 80% x 0.24 = 19%.
    let (d, _) = run(&with_cost(8 << 30, 100.0));
    assert!(d.iter().all(|d| !d.is_migrate()));
    // The same VM over 1 Gbit/s: 69 s, 80% x 0.92 = 74%: moves.
    let (d, _) = run(&with_cost(8 << 30, 1000.0));
    assert_eq!(moves(&d).len(), 1);
    let Reason::Migrate { effective_gain, .. } = &d[4].reason else {
        panic!("{}", d[4]);
    };
    assert!((effective_gain - 0.8 * (1.0 - 68.719_476_736 / 900.0)).abs() < 1e-9);
}

#[test]
fn missing_samples_exclude_a_site_until_they_arrive() {
    let t = trace(
        "a",
        FollowPolicy::default(),
        5_000,
        vec![
            // b has no sample for c2 yet: c is the best complete candidate
            // but only 10 % better.
            phase(
                60_000,
                vec![
                    client("c1", 1.0, &[("a", 50.0), ("b", 10.0), ("c", 45.0)]),
                    client("c2", 1.0, &[("a", 50.0), ("c", 45.0)]),
                ],
            ),
            phase(
                60_000,
                vec![
                    client("c1", 1.0, &[("a", 50.0), ("b", 10.0), ("c", 45.0)]),
                    client("c2", 1.0, &[("a", 50.0), ("b", 20.0), ("c", 45.0)]),
                ],
            ),
        ],
    );
    let (d, _) = run(&t);
    assert!(matches!(&d[0].reason, Reason::GainBelowMinimum { site, .. } if site == "c"));
    let b = d[0].scores.iter().find(|s| s.site == "b").unwrap();
    assert_eq!(
        b.excluded,
        Some(Exclusion::MissingSamples {
            count: 1,
            clients: vec!["c2".into()]
        })
    );
    assert!(d[0].to_string().contains("b - (no sample for 1 client(s))"));
    // The hold starts when the sample arrives (60 s), not before.
    assert_eq!(
        moves(&d).iter().map(|m| m.at_ms).collect::<Vec<_>>(),
        [80_000]
    );
}

#[test]
fn current_site_without_samples_stays() {
    let t = trace(
        "a",
        FollowPolicy::default(),
        5_000,
        vec![phase(60_000, one(&[("b", 10.0)]))],
    );
    let (d, _) = run(&t);
    assert!(d.iter().all(|d| matches!(
        &d.reason,
        Reason::CurrentUnmeasured { count: 1, clients } if clients == &["c1".to_string()]
    )));
}

#[test]
fn no_clients_or_no_candidates_stay() {
    let t = trace(
        "a",
        FollowPolicy::default(),
        5_000,
        vec![
            phase(10_000, vec![]),
            phase(10_000, vec![client("idle", 0.0, &[("a", 1.0)])]),
            phase(10_000, one(&[("a", 10.0)])),
        ],
    );
    let (d, _) = run(&t);
    let reasons: Vec<_> = d.iter().map(|d| d.reason.clone()).collect();
    assert_eq!(
        reasons,
        [
            Reason::NoClients,
            Reason::NoClients,
            Reason::NoClients,
            Reason::NoClients,
            Reason::NoCandidate,
            Reason::NoCandidate
        ]
    );
}

#[test]
fn migration_in_progress_pauses_the_hold() {
    let mut busy = phase(10_000, one(&[("a", 50.0), ("b", 10.0)]));
    busy.migrating = true;
    let mut t = trace(
        "a",
        FollowPolicy::default(),
        5_000,
        vec![phase(15_000, one(&[("a", 50.0), ("b", 10.0)]))],
    );
    t.segments.push(crate::testtrace::Segment::Phase(busy));
    t.segments.push(crate::testtrace::Segment::Phase(phase(
        60_000,
        one(&[("a", 50.0), ("b", 10.0)]),
    )));
    let (d, _) = run(&t);
    assert_eq!(d[3].reason, Reason::MigrationInProgress);
    // Hold restarted at 25 s.
    assert_eq!(
        moves(&d).iter().map(|m| m.at_ms).collect::<Vec<_>>(),
        [45_000]
    );
}

#[test]
fn an_operator_move_is_recorded_and_guarded() {
    let mut moved = phase(120_000, one(&[("a", 30.0), ("b", 50.0)]));
    moved.external_move_to = Some("b".into());
    let mut t = trace(
        "a",
        FollowPolicy::default(),
        5_000,
        vec![phase(10_000, one(&[("a", 10.0), ("b", 50.0)]))],
    );
    t.segments.push(crate::testtrace::Segment::Phase(moved));
    let mut f = Follower::new();
    let (d, _) = play(&mut f, &t.steps(), "a".into());
    // Going back to a (40 % better) is guarded: the VM left a at 10 s.
    assert!(d.iter().all(|d| !d.is_migrate()));
    assert!(matches!(
        d[2].reason,
        Reason::PingPongGuard {
            left_at_ms: 10_000,
            ..
        }
    ));
    let h: Vec<_> = f.history().iter().cloned().collect();
    assert_eq!(
        h,
        [MigrationRecord {
            at_ms: 10_000,
            from: "a".into(),
            to: "b".into(),
            by_policy: false
        }]
    );
}

#[test]
fn clock_going_back_is_ignored() {
    let t = trace(
        "a",
        FollowPolicy::default(),
        5_000,
        vec![phase(15_000, one(&[("a", 50.0), ("b", 10.0)]))],
    );
    let steps = t.steps();
    let mut f = Follower::new();
    let p = FollowPolicy::default();
    f.observe(&observation(&steps[2], "a"), &p);
    let before = f.clone();
    let d = f.observe(&observation(&steps[0], "a"), &p);
    assert_eq!(d.reason, Reason::ClockWentBack { last_ms: 10_000 });
    assert_eq!(f.pending(), before.pending());
    assert_eq!(f.last_decision(), Some(&d));
}

#[test]
fn invalid_inputs_stay_and_explain() {
    let t = trace(
        "a",
        FollowPolicy::default(),
        5_000,
        vec![phase(5_000, one(&[("a", 50.0), ("b", 10.0)]))],
    );
    let step = &t.steps()[0];
    let mut f = Follower::new();
    let d = f.observe(&observation(step, "a"), &policy(1.5, 0));
    assert!(
        matches!(&d.reason, Reason::InvalidPolicy { error } if error.starts_with("Minimum gain"))
    );
    let mut o = observation(step, "a");
    o.clients[0].weight = f64::NAN;
    let d = f.observe(&o, &FollowPolicy::default());
    assert!(matches!(d.reason, Reason::InvalidObservation { .. }));
    assert_eq!(d.action, Action::Stay);
    assert!(
        d.to_string()
            .starts_with("stay at a: invalid observation: Client \"c1\"")
    );
}

#[test]
fn zero_hold_moves_at_once() {
    let t = trace(
        "a",
        policy(0.3, 0),
        5_000,
        vec![phase(10_000, one(&[("a", 50.0), ("b", 10.0)]))],
    );
    let (d, _) = run(&t);
    assert_eq!(moves(&d).iter().map(|m| m.at_ms).collect::<Vec<_>>(), [0]);
}

#[test]
fn same_trace_twice_gives_identical_decisions() {
    for name in Trace::all_names() {
        let t = Trace::load(&name);
        assert!(!t.description.is_empty(), "{name} explains itself");
        let a = serde_json::to_string(&run(&t).0).unwrap();
        let b = serde_json::to_string(&run(&t).0).unwrap();
        assert_eq!(a, b, "{name}");
    }
}

#[test]
fn persisted_state_gives_the_same_future_decisions() {
    for name in Trace::all_names() {
        let t = Trace::load(&name);
        let steps = t.steps();
        let (whole, _) = run(&t);
        for split in [1, steps.len() / 3, steps.len() / 2, steps.len() - 1] {
            let mut f = Follower::new();
            let (mut first, site) = play(&mut f, &steps[..split], t.start_site.clone());
            let json = serde_json::to_string(&f).unwrap();
            let mut restored: Follower = serde_json::from_str(&json).unwrap();
            assert_eq!(restored, f, "{name} at {split}");
            let (rest, _) = play(&mut restored, &steps[split..], site);
            first.extend(rest);
            assert_eq!(
                serde_json::to_string(&first).unwrap(),
                serde_json::to_string(&whole).unwrap(),
                "{name} split at {split}"
            );
        }
    }
}

#[test]
fn follower_state_stays_bounded() {
    let p = FollowPolicy {
        max_per_hour: 64,
        return_cooldown_ms: 0,
        hold_ms: 0,
        ..FollowPolicy::default()
    };
    let phases: Vec<_> = (0..500)
        .map(|i| {
            let (x, y) = if i % 2 == 0 {
                (10.0, 50.0)
            } else {
                (50.0, 10.0)
            };
            phase(5_000, one(&[("a", y), ("b", x)]))
        })
        .collect();
    let mut f = Follower::new();
    let t = trace("a", p, 5_000, phases);
    let (d, _) = play(&mut f, &t.steps(), "a".into());
    assert_eq!(moves(&d).len(), 64, "the cap stops it within the hour");
    assert!(f.history().len() <= crate::HISTORY_LEN);
}
