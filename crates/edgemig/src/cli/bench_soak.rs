//! `edgemig bench soak`: many back-and-forth migrations with alice's
//! clients live, the VM verified after each, and (with `--faults`) seeded
//! agent kills, path cuts and cancels; reports split brain, lost
//! connections, failed verifications, leaks and the longest stall.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use edgemig_bench::soak::{SOAK_TESTBED, SoakOptions, SoakReport, SoakRun, run_soak};
use edgemig_testbed::TestbedConfig;

use super::image::target_dir;
use super::output;

/// Options of `bench soak`.
#[derive(Debug, Args)]
pub struct SoakArgs {
    /// Migrations, back and forth between the first two sites.
    #[arg(long, default_value_t = 50)]
    migrations: u32,
    /// Inject faults before and during the migrations: agents killed
    /// (SIGKILL) and started again, one path or every path cut for a
    /// while, cancels.
    #[arg(long)]
    faults: bool,
    /// Seed of the fault plan (the same seed gives the same faults in the
    /// same order) [default: from the clock; the report gives it].
    #[arg(long)]
    seed: Option<u64>,
    /// Testbed config: two sites joined by paths and a client `alice`
    /// linked to both [default: the soak's own testbed].
    #[arg(long)]
    config: Option<PathBuf>,
    /// Guest RAM in MiB.
    #[arg(long, default_value_t = 128)]
    memory_mib: u64,
    /// Longest time every path stays down in one cut, seconds.
    #[arg(long, default_value_t = 30)]
    max_cut_s: u64,
    /// Seconds a migration may take until the VM runs at exactly one site;
    /// past it the soak stops and reports.
    #[arg(long, default_value_t = 600)]
    limit_s: u64,
    /// Copy the agents' and QEMU's logs into this directory at the end
    /// (they go to a temporary directory anyway when the soak finds
    /// something).
    #[arg(long)]
    logs: Option<PathBuf>,
}

fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() ^ u64::from(d.subsec_nanos()))
}

/// Runs the soak: a line per migration as it ends, then the summary (or,
/// with `--json`, the report). Exits non-zero when it found a problem.
pub async fn run(args: SoakArgs, json: bool) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=10_000).contains(&args.migrations),
        "--migrations must be in 1..=10000"
    );
    anyhow::ensure!(
        (1..=600).contains(&args.max_cut_s),
        "--max-cut-s must be in 1..=600"
    );
    anyhow::ensure!(
        (30..=7200).contains(&args.limit_s),
        "--limit-s must be in 30..=7200"
    );
    let exe_dir = std::env::current_exe()?
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default();
    let target = target_dir();
    let opts = SoakOptions {
        config: match args.config {
            Some(path) => TestbedConfig::load(&path)?,
            None => TestbedConfig::parse(SOAK_TESTBED)?,
        },
        migrations: args.migrations,
        faults: args.faults,
        seed: args.seed.unwrap_or_else(clock_seed),
        memory_mib: args.memory_mib,
        max_cut: Duration::from_secs(args.max_cut_s),
        limit: Duration::from_secs(args.limit_s),
        logs: args.logs,
        agent: exe_dir.join("edgemigd"),
        linkemu: exe_dir.join("edgemig-linkemu"),
        image_dir: target.join("guest-image"),
        tool: target.join("x86_64-unknown-linux-gnu/release/edgemig-guest"),
    };
    if !json {
        println!(
            "soak: {} migrations, {}",
            opts.migrations,
            if opts.faults {
                format!("faults with seed {}", opts.seed)
            } else {
                "no faults".into()
            }
        );
    }
    let on_run = |run: &SoakRun| {
        if !json {
            println!("{}", line(run));
        }
    };
    // Dropping the soak on Ctrl-C removes its testbed (its guard).
    let report = tokio::select! {
        r = run_soak(&opts, &on_run) => r?,
        _ = tokio::signal::ctrl_c() => anyhow::bail!("Interrupted; the soak's testbed was removed"),
    };
    if json {
        output::json(&report)?;
    } else {
        print_summary(&report);
    }
    anyhow::ensure!(
        !report.findings(),
        "The soak found problems: {} split brain, {} lost connections, {} failed verifications, {} leaks, {} unsettled migrations{}",
        report.split_brain,
        report.lost_connections,
        report.verify_failures,
        report.leaks,
        report.unsettled,
        report
            .logs
            .as_ref()
            .map(|l| format!("; logs in {l}"))
            .unwrap_or_default()
    );
    Ok(())
}

fn ms(v: Option<u64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v} ms"))
}

/// One migration's line.
fn line(r: &SoakRun) -> String {
    let verified = match (r.memory_ok, r.disk_ok) {
        (Some(true), Some(true)) => "verified".to_string(),
        (None, None) => "not verified".to_string(),
        (m, d) => format!(
            "VERIFY FAILED (memory {}, disk {})",
            m.map_or("-", |ok| if ok { "ok" } else { "BAD" }),
            d.map_or("-", |ok| if ok { "ok" } else { "BAD" })
        ),
    };
    let faults = if r.faults.is_empty() {
        "no fault".to_string()
    } else {
        r.faults
            .iter()
            .map(|f| f.describe())
            .collect::<Vec<_>>()
            .join("; ")
    };
    let mut s = format!(
        "#{:>3} {} -> {}  {:<11} {:>7.1} s  downtime {:>8}  stall {:>6} ms  {verified}  | {faults}",
        r.index,
        r.from,
        r.to,
        r.outcome.name(),
        r.settle_ms as f64 / 1000.0,
        ms(r.downtime_ms),
        r.stall_ms,
    );
    if let Some(e) = r.error.as_ref().or(r.verify_error.as_ref()) {
        s.push_str(&format!("\n      {e}"));
    }
    s
}

fn print_summary(r: &SoakReport) {
    let w = &r.split_brain_watch;
    let c = &r.connections;
    let f = &r.faults;
    println!(
        "migrations {}: {} completed, {} rolled back, {} not started, {} unsettled",
        r.migrations, r.completed, r.rolled_back, r.not_started, r.unsettled
    );
    println!(
        "split brain: {} ({} looks at both sites, agents {}, QEMU {}, QMP answers {}, blind {})",
        r.split_brain, w.samples, w.agent_samples, w.qemu_samples, w.qmp_answers, w.blind
    );
    for e in &w.details {
        println!(
            "  at {:.1} s (migration {}, {} ms, seen by {}): {}",
            e.at_s,
            e.migration,
            e.duration_ms,
            e.seen_by.join("+"),
            e.sites.join("; ")
        );
    }
    println!(
        "lost connections: {} (echo: {} broken, {} hung, {} sessions; bulk: {} broken, {} hung, {} streams{}); longest stall {} ms",
        r.lost_connections,
        c.echo_errors,
        c.echo_hung,
        c.echo_sessions,
        c.bulk_errors,
        c.bulk_hung,
        c.bulk_streams,
        if c.bulk_running {
            ""
        } else {
            ", the last one exited"
        },
        r.max_stall_ms
    );
    println!("verify failures: {}", r.verify_failures);
    println!("leaks: {}", r.leaks);
    for l in &r.leaked {
        println!("  {l}");
    }
    if r.faults_enabled {
        println!(
            "faults injected: {} (kill-source {}, kill-destination {}, cut-path {}, cut-both-paths {}, cancel {} of which refused {}; not injected {})",
            r.faults_injected,
            f.kill_source,
            f.kill_destination,
            f.cut_path,
            f.cut_both_paths,
            f.cancel,
            f.cancel_refused,
            f.not_injected
        );
    }
    if let Some(why) = &r.stopped_early {
        println!("stopped early: {why}");
    }
    if let Some(logs) = &r.logs {
        println!("logs: {logs}");
    }
    println!("seed {}, {:.0} s", r.seed, r.duration_s);
    println!("conditions: {}", r.conditions);
}
