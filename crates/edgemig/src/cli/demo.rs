//! `edgemig demo`: the paper's story on a testbed built for it, torn down
//! afterwards (also on Ctrl-C) unless `--keep`.

use std::path::PathBuf;

use clap::Args;
use edgemig_bench::{DemoOptions, DemoSummary, run_demo};
use serde_json::json;

use super::image::target_dir;
use super::output;

/// `edgemig demo` arguments.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the testbed afterwards (remove it with `edgemig testbed down --name NAME`).
    #[arg(long)]
    pub keep: bool,
    /// Testbed name.
    #[arg(long, default_value = "demo")]
    pub name: String,
    /// Seconds per throughput measurement.
    #[arg(long, default_value_t = 4.0)]
    pub seconds: f64,
    /// The VM's RAM in MiB (a quarter of it holds data).
    #[arg(long, default_value_t = 256)]
    pub memory_mib: u64,
}

/// The demo ended without its VM at site-b or with alice's session broken.
#[derive(Debug, thiserror::Error)]
#[error("The demo's story did not end well: VM at {vm_site}, connection survived: {survived}")]
pub struct DemoFailed {
    /// Where the VM ended.
    pub vm_site: String,
    /// Whether alice's session survived.
    pub survived: bool,
}

/// Runs the demo.
pub async fn run(args: DemoArgs, json_out: bool) -> anyhow::Result<()> {
    let exe_dir = std::env::current_exe()?
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default();
    let target = target_dir();
    let opts = DemoOptions {
        name: args.name,
        keep: args.keep,
        seconds: args.seconds,
        memory_mib: args.memory_mib,
        agent: exe_dir.join("edgemigd"),
        linkemu: exe_dir.join("edgemig-linkemu"),
        image_dir: target.join("guest-image"),
        tool: target.join("x86_64-unknown-linux-gnu/release/edgemig-guest"),
        live: true,
    };
    let summary = tokio::select! {
        s = run_demo(&opts) => s?,
        _ = tokio::signal::ctrl_c() => anyhow::bail!("Interrupted; the demo testbed was removed"),
    };
    if json_out {
        output::json(&json!({
            "vm_site": summary.vm_site,
            "connection_survived": summary.connection_survived,
            "total_ms": summary.total_ms,
            "downtime_ms": summary.downtime_ms,
            "baseline_estimate_ms": summary.baseline_estimate_ms,
            "paths": summary.paths,
            "rtt_before_ms": summary.rtt_before_ms,
            "rtt_after_ms": summary.rtt_after_ms,
            "mbit_before": summary.mbit_before,
            "mbit_after": summary.mbit_after,
        }))?;
    } else {
        print_summary(&summary);
    }
    if summary.vm_site != "site-b" || !summary.connection_survived {
        return Err(DemoFailed {
            vm_site: summary.vm_site,
            survived: summary.connection_survived,
        }
        .into());
    }
    Ok(())
}

fn print_summary(s: &DemoSummary) {
    println!("\nedgemig demo: alice's VM followed her from site-a to site-b");
    println!(
        "  migration     {:.1} s over both paths (single TCP path estimate {:.1} s, {:.1}x), downtime {} ms",
        s.total_ms as f64 / 1000.0,
        s.baseline_estimate_ms as f64 / 1000.0,
        s.baseline_estimate_ms as f64 / s.total_ms.max(1) as f64,
        s.downtime_ms
    );
    for p in &s.paths {
        println!("  path {:<8} {:.1} MiB", p.name, p.bytes as f64 / 1048576.0);
    }
    if let Some(n) = &s.report.network {
        println!(
            "  address       {} -> {} (handoff {})",
            n.old_address, n.new_address, n.handoff
        );
    }
    println!(
        "  alice RTT     {:.1} ms before -> {:.1} ms after ({:.1}x lower)",
        s.rtt_before_ms,
        s.rtt_after_ms,
        s.rtt_before_ms / s.rtt_after_ms.max(f64::MIN_POSITIVE)
    );
    println!(
        "  alice bulk    {:.1} Mbit/s before -> {:.1} Mbit/s after ({:.1}x)",
        s.mbit_before,
        s.mbit_after,
        s.mbit_after / s.mbit_before.max(f64::MIN_POSITIVE)
    );
    println!(
        "  connection    {}",
        if s.connection_survived {
            "survived (no error, same MPTCP session throughout)"
        } else {
            "BROKEN"
        }
    );
}
