//! Tests for [`super`]: the explanation text and the JSON shape.

use super::*;

fn scores() -> Vec<SiteScore> {
    vec![
        SiteScore {
            site: "a".into(),
            current: true,
            mean_rtt_ms: Some(40.0),
            gain: Some(0.0),
            transfer_s: None,
            excluded: None,
        },
        SiteScore {
            site: "b".into(),
            current: false,
            mean_rtt_ms: Some(10.0),
            gain: Some(0.75),
            transfer_s: Some(8.6),
            excluded: None,
        },
        SiteScore {
            site: "c".into(),
            current: false,
            mean_rtt_ms: Some(60.0),
            gain: Some(-0.5),
            transfer_s: None,
            excluded: Some(Exclusion::NoCostEstimate),
        },
        SiteScore {
            site: "d".into(),
            current: false,
            mean_rtt_ms: None,
            gain: None,
            transfer_s: None,
            excluded: Some(Exclusion::MissingSamples {
                count: 2,
                clients: vec!["x".into(), "y".into()],
            }),
        },
    ]
}

fn decision(action: Action, reason: Reason) -> Decision {
    Decision {
        at_ms: 140_000,
        current_site: "a".into(),
        action,
        reason,
        scores: scores(),
        weighted_clients: 3,
        policy: FollowPolicy::default(),
    }
}

#[test]
fn migrate_explanation_has_two_lines() {
    let d = decision(
        Action::Migrate { to: "b".into() },
        Reason::Migrate {
            site: "b".into(),
            gain: 0.75,
            held_ms: 20_000,
            transfer_s: 8.6,
            effective_gain: 0.743,
            required_gain: 0.3,
        },
    );
    assert!(d.is_migrate());
    assert_eq!(
        d.to_string(),
        "migrate a -> b: b is 75% better for 20.0s; after a 8.6s transfer still 74.3% (>= 30%)\n\
         scores (3 clients): a 40.0 ms (current), b 10.0 ms (75% better), \
         c 60.0 ms (no cost estimate), d - (no sample for 2 client(s))"
    );
}

#[test]
fn stay_explanations() {
    let cases = [
        (
            Reason::Holding {
                site: "b".into(),
                gain: 0.75,
                since_ms: 120_000,
                remaining_ms: 5_000,
            },
            "stay at a: b is 75% better since 20.0s ago, holding 5.0s more",
        ),
        (
            Reason::GainBelowMinimum {
                site: "b".into(),
                gain: 0.2,
                min_gain: 0.3,
            },
            "stay at a: b is 20% better, below the 30% minimum",
        ),
        (
            Reason::CostTooHigh {
                site: "b".into(),
                gain: 0.5,
                transfer_s: 800.0,
                effective_gain: 0.0556,
                required_gain: 0.3,
            },
            "stay at a: b is 50% better, but a 800.0s transfer leaves 5.6% over the horizon, below 30%",
        ),
        (
            Reason::CurrentIsBest,
            "stay at a: the current site has the lowest RTT",
        ),
    ];
    for (reason, text) in cases {
        let d = decision(Action::Stay, reason);
        let s = d.to_string();
        assert_eq!(s.lines().next(), Some(text));
        assert_eq!(s.lines().count(), 2);
    }
    let mut d = decision(Action::Stay, Reason::MigrationInProgress);
    d.scores.clear();
    assert_eq!(d.to_string(), "stay at a: a migration is in progress");
}

#[test]
fn json_shape_is_tagged_and_round_trips() {
    let d = decision(
        Action::Migrate { to: "b".into() },
        Reason::CapReached {
            site: "b".into(),
            migrations: 4,
            max_per_hour: 4,
            next_slot_ms: 3_700_000,
        },
    );
    let v = serde_json::to_value(&d).unwrap();
    assert_eq!(
        v["action"],
        serde_json::json!({"kind": "migrate", "to": "b"})
    );
    assert_eq!(v["reason"]["kind"], "cap_reached");
    assert_eq!(v["scores"][3]["excluded"]["kind"], "missing_samples");
    assert_eq!(v["scores"][0]["transfer_s"], serde_json::Value::Null);
    assert_eq!(v["policy"]["min_gain"], 0.3);
    let back: Decision = serde_json::from_value(v).unwrap();
    assert_eq!(back, d);
    let stay = serde_json::to_value(Action::Stay).unwrap();
    assert_eq!(stay, serde_json::json!({"kind": "stay"}));
}
