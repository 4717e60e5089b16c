//! Tests for [`super`]: synthetic `query-migrate` traces.

use super::*;
use crate::options::{MigrateOptions, PostcopyPolicy};
use crate::plan::{HostEnv, plan_migration};

const LINK_BPS: u64 = 100_000_000;
const PAGE: u64 = 4096;
const MIB: u64 = 1 << 20;

/// Pages per second that dirty `ratio` × the link.
fn pages_for(ratio: f64) -> u64 {
    (LINK_BPS as f64 * ratio / 8.0 / PAGE as f64) as u64
}

fn sample(t: u64, remaining: u64, dirty_ratio: f64, iteration: u64) -> MigrationSample {
    MigrationSample {
        elapsed: Duration::from_secs(t),
        transferred_bytes: t * LINK_BPS / 8,
        remaining_bytes: remaining,
        dirty_pages_rate: pages_for(dirty_ratio),
        page_size: PAGE,
        throughput_bps: LINK_BPS,
        iteration,
        cpu_throttle_percentage: None,
    }
}

/// A guest dirtying 2x the link: remaining stuck around 64 MiB, one
/// iteration every 3 s, throttle climbing 30, 50, 70, 90, 99 once on.
fn hot_trace(seconds: u64) -> Vec<MigrationSample> {
    (1..=seconds)
        .map(|t| {
            let mut s = sample(t, 64 * MIB + (t % 2) * MIB, 2.0, 1 + t / 3);
            if t > 3 {
                let pct = (30 + 20 * ((t - 3) / 3)).min(99);
                s.cpu_throttle_percentage = u8::try_from(pct).ok();
            }
            s
        })
        .collect()
}

fn cfg(auto_converge_enabled: bool, postcopy_allowed: bool) -> ConvergenceConfig {
    ConvergenceConfig {
        auto_converge_enabled,
        postcopy_allowed,
        ..Default::default()
    }
}

fn actions(cfg: ConvergenceConfig, trace: &[MigrationSample]) -> Vec<(u64, ConvergenceAction)> {
    let mut m = ConvergenceMonitor::new(cfg);
    trace
        .iter()
        .map(|s| (s.elapsed.as_secs(), m.observe(s)))
        .filter(|(_, d)| d.action != ConvergenceAction::None)
        .map(|(t, d)| (t, d.action))
        .collect()
}

#[test]
fn idle_guest_converges_without_action() {
    // 300 MiB at 12.5 MB/s, a few hundred KB/s dirtied.
    let trace: Vec<_> = (1..=30)
        .map(|t| {
            let remaining = (300 * MIB).saturating_sub(t * LINK_BPS / 8);
            sample(t, remaining, 0.02, if remaining == 0 { 2 } else { 1 })
        })
        .collect();
    let mut m = ConvergenceMonitor::new(cfg(false, true));
    for s in &trace {
        let d = m.observe(s);
        assert_eq!(d.action, ConvergenceAction::None, "{}", d.reason);
    }
    assert_eq!(m.stage(), ConvergenceStage::Watching);
}

#[test]
fn hot_guest_gets_auto_converge_then_postcopy() {
    let got = actions(cfg(false, true), &hot_trace(120));
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0], (3, ConvergenceAction::EnableAutoConverge));
    assert_eq!(got[1].1, ConvergenceAction::StartPostcopy);
    assert!(got[1].0 > 3 && got[1].0 <= 33, "{got:?}");
}

#[test]
fn hot_guest_never_gets_postcopy_when_not_allowed() {
    let got = actions(cfg(false, false), &hot_trace(600));
    assert_eq!(got, vec![(3, ConvergenceAction::EnableAutoConverge)]);
    let mut m = ConvergenceMonitor::new(cfg(false, false));
    let last = hot_trace(600).iter().map(|s| m.observe(s)).last().unwrap();
    assert!(
        last.reason.contains("postcopy not allowed"),
        "{}",
        last.reason
    );
}

#[test]
fn auto_converge_already_on_is_relied_upon() {
    let mut m = ConvergenceMonitor::new(cfg(true, true));
    let trace = hot_trace(120);
    let got: Vec<_> = trace
        .iter()
        .map(|s| m.observe(s).action)
        .filter(|a| *a != ConvergenceAction::None)
        .collect();
    assert_eq!(got, vec![ConvergenceAction::StartPostcopy]);
    assert_eq!(m.stage(), ConvergenceStage::Postcopy);
}

#[test]
fn time_budget_triggers_postcopy() {
    // Remaining drops 3% per iteration (progress), throttle stays low, but
    // the dirty rate keeps outrunning the link: postcopy after 30 s.
    let trace: Vec<_> = (1..=60)
        .map(|t| {
            let it = 1 + t / 3;
            let remaining = (512.0 * MIB as f64 * 0.97f64.powi(it as i32)) as u64;
            let mut s = sample(t, remaining, 1.5, it);
            s.cpu_throttle_percentage = Some(30);
            s
        })
        .collect();
    let got = actions(cfg(false, true), &trace);
    assert_eq!(
        got,
        vec![
            (3, ConvergenceAction::EnableAutoConverge),
            (33, ConvergenceAction::StartPostcopy)
        ]
    );
}

#[test]
fn max_throttle_triggers_postcopy_early() {
    // Progress each iteration (so no stall), throttle already at 99%.
    let trace: Vec<_> = (1..=60)
        .map(|t| {
            let remaining = (512.0 * MIB as f64 * 0.95f64.powi(t as i32)) as u64;
            let mut s = sample(t, remaining, 2.0, t);
            s.cpu_throttle_percentage = (t > 3).then_some(99);
            s
        })
        .collect();
    let got = actions(cfg(true, true), &trace);
    assert_eq!(got, vec![(5, ConvergenceAction::StartPostcopy)]);
}

#[test]
fn stall_alone_escalates() {
    // Dirty rate below the threshold, but remaining never shrinks.
    let trace: Vec<_> = (1..=20).map(|t| sample(t, 80 * MIB, 0.5, t)).collect();
    let got = actions(cfg(false, false), &trace);
    assert_eq!(got, vec![(4, ConvergenceAction::EnableAutoConverge)]);
}

#[test]
fn flapping_samples_do_not_oscillate() {
    // Pressure every other sample, remaining shrinking: never 3 in a row.
    let trace: Vec<_> = (1..=60)
        .map(|t| {
            let ratio = if t % 2 == 0 { 2.5 } else { 0.1 };
            let remaining = (400 * MIB).saturating_sub(t * 5 * MIB);
            sample(t, remaining, ratio, 1 + t / 4)
        })
        .collect();
    assert_eq!(actions(cfg(false, true), &trace), vec![]);

    // Escalate, calm down, flap: each action at most once, in order.
    let mut trace = hot_trace(6);
    for t in 7..=200 {
        let ratio = if (t / 2) % 2 == 0 { 2.0 } else { 0.2 };
        let remaining = (200 * MIB).saturating_sub(t * MIB / 2);
        trace.push(sample(t, remaining.max(MIB * 2), ratio, t / 3));
    }
    let got = actions(cfg(false, false), &trace);
    assert_eq!(got, vec![(3, ConvergenceAction::EnableAutoConverge)]);
    let got = actions(cfg(false, true), &trace);
    assert!(got.len() <= 2, "{got:?}");
    assert_eq!(got[0].1, ConvergenceAction::EnableAutoConverge);
    if let Some(second) = got.get(1) {
        assert_eq!(second.1, ConvergenceAction::StartPostcopy);
    }
}

#[test]
fn remaining_that_fits_in_downtime_is_left_to_qemu() {
    // 1 MB fits in the default 100 ms at 100 Mbit/s (1.25 MB).
    let trace: Vec<_> = (1..=30).map(|t| sample(t, 1_000_000, 3.0, t)).collect();
    assert_eq!(actions(cfg(false, true), &trace), vec![]);
}

#[test]
fn zero_throughput_is_not_pressure() {
    let mut s = sample(1, 300 * MIB, 2.0, 1);
    s.throughput_bps = 0;
    let mut m = ConvergenceMonitor::new(cfg(false, true));
    for t in 1..=3 {
        s.elapsed = Duration::from_secs(t);
        s.remaining_bytes -= 20 * MIB;
        assert_eq!(m.observe(&s).action, ConvergenceAction::None);
    }
}

#[test]
fn config_from_plan() {
    let env = HostEnv {
        path_bandwidth_bps: vec![50_000_000, 50_000_000],
        spare_cores: 1.0,
        vcpus: 1,
        memory_bytes: 512 * MIB,
        disk_bytes: None,
    };
    let plan = plan_migration(&MigrateOptions::default(), &env);
    let c = ConvergenceConfig::from_plan(&plan);
    assert!(c.auto_converge_enabled);
    assert!(!c.postcopy_allowed);
    assert_eq!(c.downtime_limit, crate::options::DEFAULT_MAX_DOWNTIME);

    let opts = MigrateOptions {
        postcopy: PostcopyPolicy::Fallback,
        ..Default::default()
    };
    let mut plan = plan_migration(&opts, &env);
    assert!(ConvergenceConfig::from_plan(&plan).postcopy_allowed);
    // A hand-made plan mixing multifd and postcopy never gets postcopy.
    plan.multifd_channels = Some(4);
    assert!(!ConvergenceConfig::from_plan(&plan).postcopy_allowed);
}

#[test]
fn dirty_rate_conversion() {
    let s = sample(1, 0, 1.0, 1);
    assert_eq!(s.dirty_rate_bps(), s.dirty_pages_rate * PAGE * 8);
}
