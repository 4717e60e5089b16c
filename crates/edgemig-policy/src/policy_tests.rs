//! Tests for [`super`]: defaults, validation limits and the JSON shape.

use super::*;

#[test]
fn defaults_are_valid_and_as_documented() {
    let p = FollowPolicy::default();
    assert_eq!(p.validate(), Ok(()));
    assert_eq!(p.min_gain, 0.30);
    assert_eq!(p.hold_ms, 20_000);
    assert_eq!(p.max_per_hour, 4);
    assert_eq!(p.return_min_gain(), 0.60);
    assert_eq!(
        p.to_string(),
        "follow (min gain 30%, hold 20s, max 4/h, return within 10m only with 60%, amortise over 15m)"
    );
}

#[test]
fn validation_rejects_out_of_range_values() {
    let ok = FollowPolicy::default();
    let check = |p: FollowPolicy, e: PolicyError| assert_eq!(p.validate(), Err(e));
    for g in [0.0, 1.0, -0.1, 1.5, f64::NAN, f64::INFINITY] {
        let p = FollowPolicy {
            min_gain: g,
            ..ok.clone()
        };
        assert!(matches!(p.validate(), Err(PolicyError::MinGain(_))), "{g}");
    }
    check(
        FollowPolicy {
            hold_ms: MAX_HOLD_MS + 1,
            ..ok.clone()
        },
        PolicyError::Hold(MAX_HOLD_MS + 1),
    );
    check(
        FollowPolicy {
            max_per_hour: 0,
            ..ok.clone()
        },
        PolicyError::MaxPerHour(0),
    );
    check(
        FollowPolicy {
            max_per_hour: 65,
            ..ok.clone()
        },
        PolicyError::MaxPerHour(65),
    );
    check(
        FollowPolicy {
            return_cooldown_ms: 3_600_001,
            ..ok.clone()
        },
        PolicyError::ReturnCooldown(3_600_001),
    );
    check(
        FollowPolicy {
            return_gain_factor: 0.5,
            ..ok.clone()
        },
        PolicyError::ReturnGainFactor(0.5),
    );
    check(
        FollowPolicy {
            amortisation_ms: 0,
            ..ok.clone()
        },
        PolicyError::Amortisation(0),
    );
    // Edges that are allowed.
    for p in [
        FollowPolicy {
            hold_ms: 0,
            ..ok.clone()
        },
        FollowPolicy {
            hold_ms: MAX_HOLD_MS,
            ..ok.clone()
        },
        FollowPolicy {
            max_per_hour: 64,
            ..ok.clone()
        },
        FollowPolicy {
            return_cooldown_ms: 0,
            return_gain_factor: 1.0,
            ..ok.clone()
        },
    ] {
        assert_eq!(p.validate(), Ok(()), "{p:?}");
    }
    assert!(
        PolicyError::MinGain(2.0)
            .to_string()
            .starts_with("Minimum gain 2 ")
    );
}

#[test]
fn json_defaults_round_trip_and_unknown_fields() {
    let p: FollowPolicy = serde_json::from_str("{}").unwrap();
    assert_eq!(p, FollowPolicy::default());
    let p: FollowPolicy = serde_json::from_str(r#"{"min_gain":0.5,"hold_ms":5000}"#).unwrap();
    assert_eq!(p.min_gain, 0.5);
    assert_eq!(p.hold_ms, 5000);
    assert_eq!(p.max_per_hour, DEFAULT_MAX_PER_HOUR);
    let v = serde_json::to_value(&p).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"min_gain": 0.5, "hold_ms": 5000, "max_per_hour": 4,
            "return_cooldown_ms": 600000, "return_gain_factor": 2.0,
            "amortisation_ms": 900000})
    );
    assert_eq!(serde_json::from_value::<FollowPolicy>(v).unwrap(), p);
    assert!(serde_json::from_str::<FollowPolicy>(r#"{"hold":1}"#).is_err());
}

#[test]
fn percentages_print_compactly() {
    assert_eq!(pct(0.3), "30");
    assert_eq!(pct(0.125), "12.5");
    assert_eq!(pct(0.4237), "42.4");
}
