//! Tests for [`super`]: bounds, the cap window and the cool-down lookup.

use super::*;

fn rec(at_ms: u64, from: &str, to: &str, by_policy: bool) -> MigrationRecord {
    MigrationRecord {
        at_ms,
        from: from.into(),
        to: to.into(),
        by_policy,
    }
}

#[test]
fn keeps_the_newest_records_only() {
    let mut h = History::default();
    assert!(h.is_empty());
    for i in 0..(HISTORY_LEN as u64 + 10) {
        h.push(rec(i, "a", "b", true));
    }
    assert_eq!(h.len(), HISTORY_LEN);
    assert_eq!(h.iter().next().map(|r| r.at_ms), Some(10));
    assert_eq!(h.last().map(|r| r.at_ms), Some(HISTORY_LEN as u64 + 9));
}

#[test]
fn deserialising_a_long_history_truncates_it() {
    let v: Vec<_> = (0..100).map(|i| rec(i, "a", "b", true)).collect();
    let h: History = serde_json::from_value(serde_json::to_value(&v).unwrap()).unwrap();
    assert_eq!(h.len(), HISTORY_LEN);
    assert_eq!(h.iter().next().map(|r| r.at_ms), Some(36));
    let json = serde_json::to_value(&h).unwrap();
    assert!(json.is_array());
}

#[test]
fn window_counts_policy_moves_only() {
    let mut h = History::default();
    h.push(rec(1_000, "a", "b", true));
    h.push(rec(2_000, "b", "c", false));
    h.push(rec(3_000, "c", "a", true));
    assert_eq!(
        h.policy_moves_within(3_000, 3_600_000),
        WindowCount {
            count: 2,
            oldest_at_ms: Some(1_000)
        }
    );
    // At exactly 1000 + window the first move has left the window.
    assert_eq!(
        h.policy_moves_within(3_601_000, 3_600_000),
        WindowCount {
            count: 1,
            oldest_at_ms: Some(3_000)
        }
    );
    assert_eq!(h.policy_moves_within(10_000_000, 3_600_000).count, 0);
}

#[test]
fn left_within_finds_the_newest_departure() {
    let mut h = History::default();
    h.push(rec(1_000, "a", "b", true));
    h.push(rec(5_000, "b", "a", false));
    h.push(rec(9_000, "a", "c", true));
    assert_eq!(
        h.left_within("a", 10_000, 2_000).map(|r| r.at_ms),
        Some(9_000)
    );
    assert_eq!(h.left_within("a", 11_000, 2_000), None);
    assert_eq!(
        h.left_within("b", 10_000, 6_000).map(|r| r.at_ms),
        Some(5_000)
    );
    assert_eq!(h.left_within("c", 10_000, 60_000), None);
}
