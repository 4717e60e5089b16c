//! `edgemig bench follow`: the follow policy against never migrating and
//! migrating at every change, on a commuting client, in the same run.

use std::path::PathBuf;

use clap::Args;
use edgemig_bench::follow::{
    FOLLOW_TESTBED, FollowBenchOptions, default_commute, run_follow_bench,
};
use edgemig_policy::FollowPolicy;
use edgemig_testbed::TestbedConfig;

use super::image::target_dir;
use super::output;

/// Options of `bench follow`.
#[derive(Debug, Args)]
pub struct FollowArgs {
    /// Testbed config: three sites and a client `alice` linked to each
    /// [default: the benchmark's own three-site testbed].
    #[arg(long)]
    config: Option<PathBuf>,
    /// Seconds alice spends near each site.
    #[arg(long, default_value_t = 30)]
    step_s: u32,
    /// The follow strategy's hold time.
    #[arg(long, default_value = "6s")]
    hold: String,
    /// The follow strategy's minimum gain.
    #[arg(long, default_value = "30%")]
    min_gain: String,
    /// Guest RAM in MiB.
    #[arg(long, default_value_t = 192)]
    memory_mib: u64,
}

/// Runs the benchmark and prints its table (or JSON).
pub async fn run(args: FollowArgs, json: bool) -> anyhow::Result<()> {
    anyhow::ensure!(
        (5..=600).contains(&args.step_s),
        "--step-s must be in 5..=600"
    );
    let policy = FollowPolicy {
        min_gain: edgemig_policy::parse_gain(&args.min_gain)?,
        hold_ms: edgemig_policy::parse_duration_ms(&args.hold)?,
        ..FollowPolicy::default()
    };
    policy.validate()?;
    let exe_dir = std::env::current_exe()?
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default();
    let target = target_dir();
    let opts = FollowBenchOptions {
        config: match args.config {
            Some(path) => TestbedConfig::load(&path)?,
            None => TestbedConfig::parse(FOLLOW_TESTBED)?,
        },
        commute: default_commute(args.step_s),
        policy,
        memory_mib: args.memory_mib,
        agent: exe_dir.join("edgemigd"),
        linkemu: exe_dir.join("edgemig-linkemu"),
        image_dir: target.join("guest-image"),
        tool: target.join("x86_64-unknown-linux-gnu/release/edgemig-guest"),
    };
    let report = run_follow_bench(&opts).await?;
    if json {
        return output::json(&report);
    }
    println!(
        "{:<8} {:>16} {:>11} {:>10} {:>8} {:>8}",
        "strategy", "excess RTT ms·s", "migrations", "MiB moved", "RTT p50", "errors"
    );
    for s in &report.strategies {
        println!(
            "{:<8} {:>16.0} {:>11} {:>10} {:>8.1} {:>8}",
            s.name,
            s.excess_rtt_ms_s,
            s.migrations,
            s.bytes >> 20,
            s.rtt_ms_p50,
            s.errors
        );
    }
    println!("conditions: {}", report.conditions);
    Ok(())
}
