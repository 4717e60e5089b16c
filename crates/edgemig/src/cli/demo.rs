//! `edgemig demo`: the paper's story with a real Debian guest, on a
//! testbed built for it and torn down afterwards (also on Ctrl-C) unless
//! `--keep`. The Debian image is built first (or taken from the cache
//! under the target directory, as `edgemig image build --distro debian12`
//! does).

use std::path::PathBuf;

use clap::Args;
use edgemig_bench::demo::{DemoSummary, RESOLUTION_MS};
use edgemig_bench::{DemoOptions, run_demo};

use super::image::target_dir;
use super::image_cache::{DEBIAN_PACKAGES, debian12};
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
    /// Seconds alice downloads from the far site before the VM's policy is set.
    #[arg(long, default_value_t = 4.0)]
    pub seconds: f64,
    /// The VM's RAM in MiB.
    #[arg(long, default_value_t = 512)]
    pub memory_mib: u64,
    /// Then move the VM back over one TCP path (`--transport tcp`) and
    /// print the measured ratio.
    #[arg(long)]
    pub baseline: bool,
}

/// The demo ended without its VM at site-b or with alice's session broken.
#[derive(Debug, thiserror::Error)]
#[error(
    "The demo's story did not end well: VM at {vm_site}, alice's download alive: {alive}, her subflows to the new address: {to_new}, to the old: {to_old}"
)]
pub struct DemoFailed {
    /// Where the VM ended.
    pub vm_site: String,
    /// Whether alice's download survived.
    pub alive: bool,
    /// Her subflows to the new address after the handoff.
    pub to_new: u32,
    /// Her subflows to the old address after the handoff.
    pub to_old: u32,
}

/// Runs the demo.
pub async fn run(args: DemoArgs, json_out: bool) -> anyhow::Result<()> {
    let exe_dir = std::env::current_exe()?
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default();
    let target = target_dir();
    // The image copy lives until the demo is over.
    let (_scratch, image) = debian12("demo").await?;
    let opts = DemoOptions {
        name: args.name,
        keep: args.keep,
        seconds: args.seconds,
        memory_mib: args.memory_mib,
        agent: exe_dir.join("edgemigd"),
        linkemu: exe_dir.join("edgemig-linkemu"),
        image_dir: target.join("guest-image"),
        debian_image: image.path.clone(),
        packages: DEBIAN_PACKAGES.iter().map(|p| (*p).to_string()).collect(),
        baseline: args.baseline,
        live: true,
    };
    let summary = tokio::select! {
        s = run_demo(&opts) => s?,
        _ = tokio::signal::ctrl_c() => anyhow::bail!("Interrupted; the demo testbed was removed"),
    };
    if json_out {
        output::json(&summary)?;
    } else {
        print_summary(&summary);
    }
    if !summary.story_ok() {
        return Err(DemoFailed {
            vm_site: summary.vm_site,
            alive: summary.session.alive,
            to_new: summary.address.subflows_to_new,
            to_old: summary.address.subflows_to_old,
        }
        .into());
    }
    Ok(())
}

fn secs(ms: Option<u64>) -> String {
    ms.map_or_else(|| "-".into(), |m| format!("{:.1} s", m as f64 / 1000.0))
}

fn mbit(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |m| format!("{m:.1} Mbit/s"))
}

fn ratio(after: Option<f64>, before: Option<f64>) -> String {
    match (after, before) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.1}x", a / b),
        _ => "-".into(),
    }
}

fn print_summary(s: &DemoSummary) {
    let m = &s.migration;
    let p = &m.phases;
    println!(
        "\nedgemig demo: alice's Debian VM followed her from {} to {}",
        m.from, s.vm_site
    );
    println!(
        "  VM           {}: Debian 12 with {}, booted in {:.1} s; nginx on MPTCP through {}",
        s.vm,
        s.image.packages.join(", "),
        s.boot_ms as f64 / 1000.0,
        s.mptcp_apps
    );
    println!(
        "  image        {} {} pushed to site-b beforehand ({:.0} MiB sent in {:.1} s)",
        s.image.name,
        s.image.digest.get(..19).unwrap_or(&s.image.digest),
        s.image.push_wire_bytes as f64 / 1_048_576.0,
        s.image.push_ms as f64 / 1000.0
    );
    println!(
        "  trigger      follow policy, {:.1} s after it was set: {}",
        s.trigger.decided_ms as f64 / 1000.0,
        s.trigger.explanation
    );
    println!(
        "  migration    {} over both paths ({}, compression {}): prepare {}, disk {}, memory {}, switchover {}; fixed cost {}",
        secs(Some(m.total_ms)),
        m.transport.as_str(),
        m.compression,
        secs(p.prepare_ms),
        secs(p.disk_ms),
        secs(p.memory_ms),
        secs(p.switchover_ms),
        secs(m.fixed_ms)
    );
    println!(
        "  downtime     {} ms (QEMU's figure {} ms); handoff {} after the move",
        m.downtime_ms.map_or_else(|| "-".into(), |d| d.to_string()),
        m.qemu_downtime_ms
            .map_or_else(|| "-".into(), |d| d.to_string()),
        secs(p.handoff_ms)
    );
    for d in &m.disks {
        println!(
            "  disk {:<7} sync {}, {:.1} MiB sent{}",
            d.role,
            d.sync,
            d.bytes as f64 / 1_048_576.0,
            if d.sync == "top" {
                " (only the overlay: site-b held the image)"
            } else {
                ""
            }
        );
    }
    for path in &m.paths {
        println!(
            "  path {:<7} {:.1} MiB",
            path.name,
            path.bytes as f64 / 1_048_576.0
        );
    }
    println!(
        "  address      {} -> {}; alice's subflows after the handoff: {} to the new address, {} to the old",
        s.address.old, s.address.new, s.address.subflows_to_new, s.address.subflows_to_old
    );
    let rtt = |v: Option<f64>| v.map_or_else(|| "-".into(), |r| format!("{r:.1} ms"));
    println!(
        "  alice RTT    {} before -> {} after ({} lower)",
        rtt(s.before.rtt_ms),
        rtt(s.after.rtt_ms),
        ratio(s.before.rtt_ms, s.after.rtt_ms)
    );
    println!(
        "  alice rate   {} before, {} during the move, {} after ({})",
        mbit(s.before.mbit),
        mbit(s.during.mbit),
        mbit(s.after.mbit),
        ratio(s.after.mbit, s.before.mbit)
    );
    let switchover_at =
        p.prepare_ms.unwrap_or(0) + p.disk_ms.unwrap_or(0) + p.memory_ms.unwrap_or(0);
    println!(
        "  stall        longest gap {} ms, p99 {} ms ({RESOLUTION_MS} ms resolution); the longest began {:.1} s into the migration (switchover at {:.1} s)",
        s.stall.max_ms,
        s.stall.p99_ms,
        s.stall_at_ms as f64 / 1000.0,
        switchover_at as f64 / 1000.0
    );
    let x = &s.session;
    println!(
        "  download     {}: {} of {} copies of {} MiB verified, {} connection(s), exit {}: {}",
        x.client,
        x.verified_copies,
        x.copies,
        x.copy_bytes >> 20,
        x.connections,
        x.exit_code.map_or_else(|| "-".into(), |c| c.to_string()),
        if x.alive {
            "survived, same connection throughout"
        } else {
            "BROKEN"
        }
    );
    if let Some(b) = &s.baseline {
        println!(
            "  baseline     one TCP path back to {}: {} ({:.1}x the MPTCP migration's {}; copy {})",
            b.migration.to,
            secs(Some(b.migration.total_ms)),
            b.ratio,
            secs(Some(m.total_ms)),
            b.copy_ratio
                .map_or_else(|| "-".into(), |r| format!("{r:.1}x"))
        );
    }
}
