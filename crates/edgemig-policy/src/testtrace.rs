//! Test support: traces as data and a runner that plays them.
//!
//! A trace (`tests/traces/*.json`, or built in code) is a start site, a
//! policy, an observation period and piecewise-constant phases of client
//! RTTs, optionally with deterministic jitter (to look like a recording).
//! The runner feeds one observation per period to a [`Follower`] and
//! moves the VM instantly when told to migrate.

use crate::decision::{Action, Decision};
use crate::follower::Follower;
use crate::observation::{ClientSample, CostEstimate, Observation};
use crate::policy::FollowPolicy;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A whole trace with its expected outcome.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trace {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub start_site: String,
    #[serde(default)]
    pub policy: FollowPolicy,
    pub step_ms: u64,
    #[serde(default)]
    pub start_ms: u64,
    pub cost: BTreeMap<String, CostEstimate>,
    #[serde(default)]
    pub noise: Option<Noise>,
    pub segments: Vec<Segment>,
    pub expect: Expect,
}

/// Uniform jitter in `[-max_ms, +max_ms]` on every RTT, from `seed`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Noise {
    pub seed: u64,
    pub max_ms: f64,
}

/// One phase, or a block of phases repeated.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Segment {
    Repeat(Repeat),
    Phase(Phase),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Repeat {
    pub times: u32,
    pub phases: Vec<Phase>,
}

/// Constant inputs for `for_ms`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    pub for_ms: u64,
    pub clients: Vec<ClientSample>,
    /// Replaces the trace's cost from this phase on.
    #[serde(default)]
    pub cost: Option<BTreeMap<String, CostEstimate>>,
    /// Replaces the policy from this phase on (the last one stands).
    #[serde(default)]
    pub policy: Option<FollowPolicy>,
    /// Marks every observation of the phase as "migration in progress".
    #[serde(default)]
    pub migrating: bool,
    /// Moves the VM here at the phase start, as an operator would.
    #[serde(default)]
    pub external_move_to: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub migrations: Vec<Move>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Move {
    pub at_ms: u64,
    pub from: String,
    pub to: String,
}

/// One expanded observation tick (without the current site, which
/// depends on the decisions).
#[derive(Debug, Clone)]
pub struct Step {
    pub at_ms: u64,
    pub clients: Vec<ClientSample>,
    pub cost: BTreeMap<String, CostEstimate>,
    pub policy: FollowPolicy,
    pub migrating: bool,
    pub external_move_to: Option<String>,
}

/// xorshift64*: a tiny deterministic generator for tests.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
    /// Uniform integer in [0, n).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

impl Trace {
    /// Load `tests/traces/NAME.json`.
    pub fn load(name: &str) -> Trace {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/traces")
            .join(format!("{name}.json"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
    }

    /// Every trace file's name (without `.json`), sorted.
    pub fn all_names() -> Vec<String> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/traces");
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Expand the phases into observation ticks.
    pub fn steps(&self) -> Vec<Step> {
        let mut rng = self.noise.map(|n| (Rng::new(n.seed), n.max_ms));
        let mut policy = self.policy.clone();
        let mut cost = self.cost.clone();
        let mut out = Vec::new();
        let mut t = self.start_ms;
        let mut phase_start = self.start_ms;
        let phases = self.segments.iter().flat_map(|s| match s {
            Segment::Phase(p) => vec![p],
            Segment::Repeat(r) => (0..r.times).flat_map(|_| r.phases.iter()).collect(),
        });
        for p in phases {
            if let Some(np) = &p.policy {
                policy = np.clone();
            }
            if let Some(nc) = &p.cost {
                cost = nc.clone();
            }
            let end = phase_start + p.for_ms;
            let mut first = true;
            while t < end {
                let mut clients = p.clients.clone();
                if let Some((rng, max)) = rng.as_mut() {
                    for c in &mut clients {
                        for r in c.rtt_ms_by_site.values_mut() {
                            let j = rng.range(-*max, *max);
                            *r = ((*r + j).max(0.0) * 10.0).round() / 10.0;
                        }
                    }
                }
                out.push(Step {
                    at_ms: t,
                    clients,
                    cost: cost.clone(),
                    policy: policy.clone(),
                    migrating: p.migrating,
                    external_move_to: if first {
                        p.external_move_to.clone()
                    } else {
                        None
                    },
                });
                first = false;
                t += self.step_ms;
            }
            phase_start = end;
        }
        out
    }
}

/// The observation a step gives at `site`.
pub fn observation(step: &Step, site: &str) -> Observation {
    Observation {
        at_ms: step.at_ms,
        current_site: site.to_owned(),
        migration_in_progress: step.migrating,
        clients: step.clients.clone(),
        migration_cost: step.cost.clone(),
    }
}

/// Play `steps` from `site`; returns the decisions and the final site.
pub fn play(follower: &mut Follower, steps: &[Step], mut site: String) -> (Vec<Decision>, String) {
    let mut decisions = Vec::with_capacity(steps.len());
    for step in steps {
        if let Some(to) = &step.external_move_to {
            site = to.clone();
        }
        let d = follower.observe(&observation(step, &site), &step.policy);
        if let Action::Migrate { to } = &d.action {
            assert_ne!(to, &site, "never migrate to the current site");
            site = to.clone();
        }
        decisions.push(d);
    }
    (decisions, site)
}

/// The migrations among `decisions`.
pub fn moves(decisions: &[Decision]) -> Vec<Move> {
    decisions
        .iter()
        .filter_map(|d| match &d.action {
            Action::Migrate { to } => Some(Move {
                at_ms: d.at_ms,
                from: d.current_site.clone(),
                to: to.clone(),
            }),
            Action::Stay => None,
        })
        .collect()
}

/// A client with RTTs per site.
pub fn client(name: &str, weight: f64, rtts: &[(&str, f64)]) -> ClientSample {
    ClientSample {
        client: name.into(),
        weight,
        rtt_ms_by_site: rtts.iter().map(|(s, r)| ((*s).to_owned(), *r)).collect(),
    }
}

/// A phase of `for_ms` with these clients and nothing else.
pub fn phase(for_ms: u64, clients: Vec<ClientSample>) -> Phase {
    Phase {
        for_ms,
        clients,
        cost: None,
        policy: None,
        migrating: false,
        external_move_to: None,
    }
}

/// Cheap moves (1 GiB over 1 Gbit/s) to every site in `sites`.
pub fn cheap(sites: &[&str]) -> BTreeMap<String, CostEstimate> {
    sites
        .iter()
        .map(|s| {
            (
                (*s).to_owned(),
                CostEstimate {
                    bytes: 1 << 30,
                    path_mbit: 1000.0,
                },
            )
        })
        .collect()
}

/// A noiseless in-code trace.
pub fn trace(start_site: &str, policy: FollowPolicy, step_ms: u64, segments: Vec<Phase>) -> Trace {
    let mut sites: Vec<&str> = segments
        .iter()
        .flat_map(|p| p.clients.iter())
        .flat_map(|c| c.rtt_ms_by_site.keys().map(String::as_str))
        .collect();
    sites.sort();
    sites.dedup();
    Trace {
        name: "in-code".into(),
        description: String::new(),
        start_site: start_site.into(),
        policy,
        step_ms,
        start_ms: 0,
        cost: cheap(&sites),
        noise: None,
        segments: segments.into_iter().map(Segment::Phase).collect(),
        expect: Expect {
            migrations: Vec::new(),
        },
    }
}

/// Play a whole trace with a fresh follower.
pub fn run(t: &Trace) -> (Vec<Decision>, String) {
    play(&mut Follower::new(), &t.steps(), t.start_site.clone())
}
