//! Placement policies of VMs: `follow` keeps a VM at the site with the
//! lowest latency to its clients (`edgemig vm policy VM follow`); the
//! decision logic is `edgemig-policy`.

use edgemig_policy::{Decision, FollowPolicy, Follower};
use serde::{Deserialize, Serialize};

/// Body of `PUT /v1/vms/{name}/policy`: `{"mode": "none"}` or
/// `{"mode": "follow", "min_gain": 0.3, "hold_ms": 20000, ...}` (every
/// follow field optional, see [`FollowPolicy`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum PolicySpec {
    /// The VM stays where the operator puts it.
    None,
    /// The VM follows its clients.
    Follow(FollowPolicy),
}

/// A following VM's policy and decision state (hold, history): kept in
/// the VM's record and sent along when it migrates, so the destination's
/// controller carries on where the source left off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FollowState {
    /// The policy in force.
    pub policy: FollowPolicy,
    /// When it was set, unix ms.
    pub set_at_ms: u64,
    /// The decision state machine.
    pub follower: Follower,
}

/// A VM's policy as `GET /v1/vms/{name}` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyView {
    /// The policy in force (the last one set stands).
    pub spec: PolicySpec,
    /// When it was set, unix ms.
    pub set_at_ms: u64,
    /// What the site's controller is doing about it now, in words
    /// (`following`, `migrating to site-b`, `lease held by site-b; not
    /// deciding`, `directory unavailable: …; not deciding`).
    pub status: String,
    /// The last decision, with its inputs and scores.
    pub decision: Option<Decision>,
    /// The last decision in one or two lines.
    pub explanation: Option<String>,
}

/// Body of `POST /v1/peer/probe`: how far is each target from this site?
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeRequest {
    /// Client addresses (at most [`MAX_PROBE_TARGETS`]).
    pub targets: Vec<std::net::IpAddr>,
}

/// Answer to [`ProbeRequest`], one entry per target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeReply {
    /// Round-trip time from this site in ms; `null` when it did not answer.
    pub rtt_ms: Vec<Option<f64>>,
}

/// Most targets one probe request may name.
pub const MAX_PROBE_TARGETS: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_read_as_documented() {
        let none: PolicySpec = serde_json::from_str(r#"{"mode":"none"}"#).unwrap();
        assert_eq!(none, PolicySpec::None);
        let follow: PolicySpec =
            serde_json::from_str(r#"{"mode":"follow","min_gain":0.5,"hold_ms":4000}"#).unwrap();
        let PolicySpec::Follow(p) = follow else {
            panic!("not follow")
        };
        assert_eq!(p.min_gain, 0.5);
        assert_eq!(p.hold_ms, 4000);
        assert_eq!(p.max_per_hour, FollowPolicy::default().max_per_hour);
        assert!(serde_json::from_str::<PolicySpec>(r#"{"mode":"follow","hold":1}"#).is_err());
        assert!(serde_json::from_str::<PolicySpec>(r#"{"mode":"teleport"}"#).is_err());
        let back = serde_json::to_string(&PolicySpec::Follow(p)).unwrap();
        assert!(back.contains(r#""mode":"follow""#), "{back}");
    }
}
