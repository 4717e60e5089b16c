//! Replays a trace recorded by real site agents (`edgemig-agent`'s follow
//! record: the observation, the policy and the decision of every tick, from
//! all three sites of a commute, merged in time order): a fresh `Follower`
//! fed the recorded observations must decide exactly what the agents
//! decided, and the trace must show the commute's two moves and none
//! during the stretch where the best site flapped.

use edgemig_policy::{Action, Decision, FollowPolicy, Follower, Observation};
use serde::Deserialize;

#[derive(Deserialize)]
struct Line {
    observation: Observation,
    policy: FollowPolicy,
    decision: Decision,
}

fn recorded() -> Vec<Line> {
    let text = include_str!("traces/recorded_commute.jsonl");
    text.lines()
        .map(|l| serde_json::from_str(l).expect("a recorded line"))
        .collect()
}

#[test]
fn replaying_a_recorded_commute_gives_the_recorded_decisions() {
    let lines = recorded();
    assert!(lines.len() > 20, "the trace covers the whole commute");
    let mut follower = Follower::new();
    for (i, line) in lines.iter().enumerate() {
        let decision = follower.observe(&line.observation, &line.policy);
        assert_eq!(
            serde_json::to_value(&decision).unwrap(),
            serde_json::to_value(&line.decision).unwrap(),
            "decision {i} at {} ms differs",
            line.observation.at_ms
        );
    }
    let moves: Vec<(String, String)> = lines
        .iter()
        .filter_map(|l| match &l.decision.action {
            Action::Migrate { to } => Some((l.observation.current_site.clone(), to.clone())),
            Action::Stay => None,
        })
        .collect();
    assert_eq!(
        moves,
        vec![
            ("site-a".to_string(), "site-b".to_string()),
            ("site-b".to_string(), "site-c".to_string())
        ]
    );
}

#[test]
fn the_recorded_inputs_under_a_stricter_policy_move_less() {
    // The same real inputs with a hold longer than any stretch of the
    // commute: the follower never moves.
    let mut follower = Follower::new();
    let strict = FollowPolicy {
        hold_ms: 3_600_000,
        ..FollowPolicy::default()
    };
    for line in recorded() {
        let decision = follower.observe(&line.observation, &strict);
        assert_eq!(decision.action, Action::Stay, "{decision}");
    }
}
