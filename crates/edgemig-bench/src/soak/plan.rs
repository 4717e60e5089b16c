//! The soak's fault plan: which fault, when and for how long, drawn from a
//! seeded generator before the soak starts, so that `--seed N` replays the
//! same faults in the same order (their exact moment still depends on when
//! the migration reaches the phase they wait for). No I/O.

use std::time::Duration;

use serde::Serialize;

/// SplitMix64: small, seeded, and the same on every machine.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// Uniform in `lo..=hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo) + 1)
    }
}

/// What a fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// SIGKILL the agent of the site the migration leaves (or, between
    /// migrations, of the site running the VM), then start it again.
    KillSource,
    /// SIGKILL the agent of the site the migration goes to (or, between
    /// migrations, of the other site), then start it again.
    KillDestination,
    /// One path between the sites down, then up again.
    CutPath,
    /// Every path between the sites down, then up again.
    CutBothPaths,
    /// `migrate cancel` (refused once the commit may be out).
    Cancel,
}

impl FaultKind {
    /// Name in reports and lines.
    pub fn name(self) -> &'static str {
        match self {
            Self::KillSource => "kill-source",
            Self::KillDestination => "kill-destination",
            Self::CutPath => "cut-path",
            Self::CutBothPaths => "cut-both-paths",
            Self::Cancel => "cancel",
        }
    }
}

/// The earliest phase of the source's migration a fault waits for; it is
/// injected in the first phase seen at or after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PhaseTarget {
    /// Asking the destination to prepare.
    Preparing,
    /// Disk mirrors.
    Disk,
    /// Memory stream.
    Memory,
    /// Paused: switchover, awaiting the commit, or just committed.
    Switchover,
    /// The network handoff after the commit.
    Network,
}

impl PhaseTarget {
    const ALL: [Self; 5] = [
        Self::Preparing,
        Self::Disk,
        Self::Memory,
        Self::Switchover,
        Self::Network,
    ];

    /// Name in reports and lines.
    pub fn name(self) -> &'static str {
        match self {
            Self::Preparing => "preparing",
            Self::Disk => "disk",
            Self::Memory => "memory",
            Self::Switchover => "switchover",
            Self::Network => "network",
        }
    }

    /// Order of the target among the source's phases.
    pub fn rank(self) -> u8 {
        match self {
            Self::Preparing => 0,
            Self::Disk => 1,
            Self::Memory => 2,
            Self::Switchover => 3,
            Self::Network => 6,
        }
    }
}

/// Order of a phase name of the source's migration (`None` for names that
/// are not a running phase).
pub fn phase_rank(phase: &str) -> Option<u8> {
    Some(match phase {
        "preparing" => 0,
        "disk" => 1,
        "memory" => 2,
        "switchover" => 3,
        "awaiting_commit" => 4,
        "committed" => 5,
        "network" => 6,
        _ => return None,
    })
}

/// When a fault strikes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "when", rename_all = "snake_case")]
pub enum Moment {
    /// Before the migration starts, with no migration running.
    Between,
    /// While the migration runs, once it reached `phase`.
    During {
        /// The phase it waits for.
        phase: PhaseTarget,
    },
}

/// One planned fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Fault {
    /// What it does.
    pub kind: FaultKind,
    /// When.
    #[serde(flatten)]
    pub moment: Moment,
    /// The path a `cut-path` takes down (index among the sites' paths).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<usize>,
    /// How long an agent stays dead or a path down, ms.
    pub hold_ms: u64,
}

impl Fault {
    /// How long the fault holds.
    pub fn hold(&self) -> Duration {
        Duration::from_millis(self.hold_ms)
    }

    /// `kill-source during memory (3.0 s)` and the like.
    pub fn describe(&self) -> String {
        let when = match self.moment {
            Moment::Between => "between migrations".to_string(),
            Moment::During { phase } => format!("during {}", phase.name()),
        };
        let path = self
            .path
            .map(|p| format!(" path{}", p + 1))
            .unwrap_or_default();
        format!(
            "{}{path} {when} ({:.1} s)",
            self.kind.name(),
            self.hold_ms as f64 / 1000.0
        )
    }
}

/// Limits of the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanLimits {
    /// Paths between the two sites.
    pub paths: usize,
    /// Longest time every path stays down.
    pub max_cut: Duration,
}

/// The faults of each of `migrations` migrations, in order (between-fault
/// first): each migration gets one fault while it runs, and one in three
/// another one before it starts.
pub fn plan_faults(seed: u64, migrations: u32, limits: PlanLimits) -> Vec<Vec<Fault>> {
    let mut rng = Rng::new(seed);
    let max_cut_ms = u64::try_from(limits.max_cut.as_millis())
        .unwrap_or(u64::MAX)
        .max(1000);
    (0..migrations)
        .map(|_| {
            let mut faults = Vec::new();
            if rng.below(3) == 0 {
                let kind = [
                    FaultKind::KillSource,
                    FaultKind::KillDestination,
                    FaultKind::CutPath,
                    FaultKind::CutBothPaths,
                ][usize::try_from(rng.below(4)).unwrap_or(0)];
                faults.push(draw(&mut rng, kind, Moment::Between, limits, max_cut_ms));
            }
            let kind = [
                FaultKind::KillSource,
                FaultKind::KillDestination,
                FaultKind::CutPath,
                FaultKind::CutBothPaths,
                FaultKind::Cancel,
            ][usize::try_from(rng.below(5)).unwrap_or(0)];
            let phase = PhaseTarget::ALL[usize::try_from(rng.below(5)).unwrap_or(0)];
            faults.push(draw(
                &mut rng,
                kind,
                Moment::During { phase },
                limits,
                max_cut_ms,
            ));
            faults
        })
        .collect()
}

fn draw(
    rng: &mut Rng,
    kind: FaultKind,
    moment: Moment,
    limits: PlanLimits,
    max_cut_ms: u64,
) -> Fault {
    let (path, hold_ms) = match kind {
        FaultKind::KillSource => (None, rng.between(500, 3000)),
        FaultKind::KillDestination => (None, rng.between(1000, 6000)),
        FaultKind::CutPath => (
            Some(usize::try_from(rng.below(limits.paths.max(1) as u64)).unwrap_or(0)),
            rng.between(2000, 8000),
        ),
        FaultKind::CutBothPaths => (None, rng.between(max_cut_ms.min(5000), max_cut_ms)),
        FaultKind::Cancel => (None, 0),
    };
    Fault {
        kind,
        moment,
        path,
        hold_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: PlanLimits = PlanLimits {
        paths: 2,
        max_cut: Duration::from_secs(20),
    };

    #[test]
    fn the_same_seed_gives_the_same_plan_and_another_seed_another() {
        let a = plan_faults(1, 50, LIMITS);
        assert_eq!(a, plan_faults(1, 50, LIMITS));
        assert_ne!(a, plan_faults(2, 50, LIMITS));
        assert_eq!(a.len(), 50);
    }

    #[test]
    fn every_migration_gets_a_fault_while_it_runs_and_kinds_all_appear() {
        let plan = plan_faults(7, 200, LIMITS);
        let mut kinds = std::collections::HashSet::new();
        let mut between = 0;
        for faults in &plan {
            let during: Vec<_> = faults
                .iter()
                .filter(|f| matches!(f.moment, Moment::During { .. }))
                .collect();
            assert_eq!(during.len(), 1, "{faults:?}");
            assert!(
                faults.last().is_some_and(|f| f == during[0]),
                "between first"
            );
            between += faults.len() - 1;
            for f in faults {
                kinds.insert(f.kind.name());
                if f.kind == FaultKind::Cancel {
                    assert!(matches!(f.moment, Moment::During { .. }));
                }
                if f.kind == FaultKind::CutBothPaths {
                    assert!(f.hold() <= LIMITS.max_cut && f.hold() >= Duration::from_secs(5));
                }
                if let Some(p) = f.path {
                    assert!(p < 2);
                }
            }
        }
        assert_eq!(kinds.len(), 5, "{kinds:?}");
        assert!(
            (40..=95).contains(&between),
            "about one in three: {between}"
        );
    }

    #[test]
    fn phases_are_ordered_like_the_source_job() {
        for t in PhaseTarget::ALL {
            assert_eq!(phase_rank(t.name()), Some(t.rank()));
        }
        assert!(phase_rank("awaiting_commit") > Some(PhaseTarget::Switchover.rank()));
        assert_eq!(phase_rank("completed"), None);
    }

    #[test]
    fn descriptions_name_the_fault() {
        let f = Fault {
            kind: FaultKind::CutPath,
            moment: Moment::During {
                phase: PhaseTarget::Memory,
            },
            path: Some(1),
            hold_ms: 2500,
        };
        assert_eq!(f.describe(), "cut-path path2 during memory (2.5 s)");
        let json = serde_json::to_value(f).unwrap();
        assert_eq!(json["kind"], "cut-path");
        assert_eq!(json["when"], "during");
        assert_eq!(json["phase"], "memory");
    }
}
