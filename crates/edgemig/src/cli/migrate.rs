//! `edgemig migrate VM --to SITE`, `edgemig migrate cancel VM`, `edgemig
//! migrate resolve VM --outcome committed|aborted` and `edgemig
//! migrations`: live migration with a progress display and a final report.

use std::io::Write;
use std::time::Duration;

use clap::Args;
use edgemig_api::{ApiClient, MigrateRequest, MigrationView};
use edgemig_migration::{Compression, MigrateOptions, MigrationReport, ReportStatus, Transport};
use edgemig_testbed::units::{parse_duration, parse_rate};

use super::output;

/// How often the progress display refreshes.
const REFRESH: Duration = Duration::from_millis(500);

/// `edgemig migrate` arguments.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The VM to migrate; or `cancel VM` to stop a running migration
    /// (before its switchover); or `resolve VM --outcome ...` to settle a
    /// migration whose outcome is unknown because the destination cannot be
    /// asked.
    pub vm: String,
    /// With `cancel` or `resolve`: the VM.
    pub cancel_vm: Option<String>,
    /// With `resolve`: what happened at the destination, `committed` (the
    /// VM runs there: remove it here) or `aborted` (it never ran there:
    /// resume it here). Say `aborted` only when you know: a VM that runs
    /// at the destination would then run twice.
    #[arg(long)]
    pub outcome: Option<String>,
    /// Destination site.
    #[arg(long)]
    pub to: Option<String>,
    /// `mptcp` (every path between the sites) or `tcp` (one path: the plain-QEMU baseline).
    #[arg(long, default_value = "mptcp")]
    pub transport: String,
    /// `auto`, `none`, `zstd` or `zstd:LEVEL`.
    #[arg(long, default_value = "auto")]
    pub compression: String,
    /// Longest pause of the VM at switchover.
    #[arg(long, default_value = "100ms")]
    pub max_downtime: String,
    /// Cap on the migration's bandwidth, e.g. `40mbit`.
    #[arg(long)]
    pub bandwidth_limit: Option<String>,
    /// Send memory and disk without TLS (said in the report).
    #[arg(long)]
    pub insecure: bool,
    /// `never` or `fallback`: switch to postcopy when the guest dirties memory
    /// faster than the paths carry it (runs without multifd then).
    #[arg(long, default_value = "never")]
    pub postcopy: String,
    /// Keep the VM's address behind the tunnel (no handoff to the new site).
    #[arg(long)]
    pub no_handoff: bool,
    /// multifd channels, 1 to 16 [default: with mptcp 4 when it compresses, else one stream; none with tcp]; with
    /// `--transport tcp` they all use the one path and compression applies.
    #[arg(long)]
    pub multifd: Option<u8>,
}

/// The migration ended without success.
#[derive(Debug, thiserror::Error)]
#[error("Migration {status}: {error}")]
pub struct MigrationFailed {
    /// `failed` or `cancelled`.
    pub status: String,
    /// Why.
    pub error: String,
}

fn options(args: &MigrateArgs) -> anyhow::Result<MigrateOptions> {
    let mut o = MigrateOptions {
        transport: args.transport.parse::<Transport>()?,
        compression: args.compression.parse::<Compression>()?,
        max_downtime: parse_duration(&args.max_downtime)?,
        insecure: args.insecure,
        handoff: !args.no_handoff,
        postcopy: args.postcopy.parse()?,
        multifd: args.multifd,
        ..MigrateOptions::default()
    };
    if let Some(limit) = &args.bandwidth_limit {
        o.bandwidth_limit_bps = Some(parse_rate(limit)?);
    }
    o.validate()?;
    Ok(o)
}

/// Runs `edgemig migrate ...`.
pub async fn run(client: &ApiClient, args: MigrateArgs, json: bool) -> anyhow::Result<()> {
    if args.vm == "cancel"
        && let Some(vm) = &args.cancel_vm
    {
        let view = client.cancel_migration(vm).await?;
        if json {
            return output::json(&view);
        }
        println!("cancelling the migration of {vm} to {}", view.to);
        return Ok(());
    }
    if args.vm == "resolve"
        && let Some(vm) = &args.cancel_vm
    {
        let outcome = match args.outcome.as_deref() {
            Some("committed") => edgemig_migration::Outcome::Committed,
            Some("aborted") => edgemig_migration::Outcome::Aborted,
            other => anyhow::bail!(
                "resolve needs --outcome committed or --outcome aborted (got {other:?})"
            ),
        };
        let view = client
            .resolve_migration(vm, &edgemig_api::migration::ResolveRequest { outcome })
            .await?;
        if json {
            return output::json(&view);
        }
        println!(
            "settled the migration of {vm} to {} as {outcome:?}",
            view.to
        );
        return Ok(());
    }
    let to = args
        .to
        .clone()
        .ok_or_else(|| anyhow::anyhow!("Missing --to SITE: where should {} go?", args.vm))?;
    let request = MigrateRequest {
        to,
        options: options(&args)?,
    };
    client.migrate(&args.vm, &request).await?;
    let report = follow(client, &args.vm, !json).await?;
    if json {
        output::json(&report)?;
    } else {
        print_report(&report);
    }
    match report.status {
        ReportStatus::Completed => Ok(()),
        other => Err(MigrationFailed {
            status: format!("{other:?}").to_lowercase(),
            error: report.error.clone().unwrap_or_default(),
        }
        .into()),
    }
}

/// Polls until the migration of `vm` ends; draws progress on stderr.
async fn follow(client: &ApiClient, vm: &str, show: bool) -> anyhow::Result<MigrationReport> {
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    loop {
        let view: MigrationView = client.migration(vm).await?;
        if let Some(report) = view.report.filter(|_| !view.running) {
            if show && tty {
                eprintln!();
            }
            return Ok(report);
        }
        if show && let Some(p) = &view.progress {
            let line = format!(
                "{:<10} {:>8.1} MiB done {:>8.1} MiB left  {:>7.1} Mbit/s  dirty {:>6.1} Mbit/s  ETA {}",
                p.phase.as_str(),
                p.bytes_done as f64 / 1048576.0,
                p.bytes_left as f64 / 1048576.0,
                p.throughput_bps as f64 / 1e6,
                p.dirty_rate_bps as f64 / 1e6,
                p.eta_ms.map_or_else(
                    || "-".to_string(),
                    |ms| format!("{:.0}s", ms as f64 / 1000.0)
                ),
            );
            if tty {
                eprint!("\r{line}");
                let _ = std::io::stderr().flush();
            } else {
                eprintln!("{line}");
            }
        }
        tokio::time::sleep(REFRESH).await;
    }
}

fn print_report(r: &MigrationReport) {
    println!(
        "migration of {} from {} to {}: {:?}",
        r.vm, r.from, r.to, r.status
    );
    let opt_ms = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |d| format!("{d} ms"));
    println!("  id {}", r.id);
    println!(
        "  total {:.1} s, downtime {} (QEMU: {}), fixed cost {}, memory {:.1} MiB, disk {:.1} MiB, transport {}, compression {}{}",
        r.total_ms as f64 / 1000.0,
        opt_ms(r.downtime_ms),
        opt_ms(r.qemu_downtime_ms),
        opt_ms(r.fixed_ms),
        r.memory_bytes as f64 / 1048576.0,
        r.disk_bytes as f64 / 1048576.0,
        r.transport,
        r.compression,
        if r.insecure {
            ", INSECURE (no TLS on the data path)"
        } else {
            ""
        }
    );
    let ph = &r.phases;
    println!(
        "  phases: prepare {}, disk {}, memory {}, switchover {}, postcopy {}, handoff {}",
        opt_ms(ph.prepare_ms),
        opt_ms(ph.disk_ms),
        opt_ms(ph.memory_ms),
        opt_ms(ph.switchover_ms),
        opt_ms(ph.postcopy_ms),
        opt_ms(ph.handoff_ms)
    );
    let b = &r.blackout;
    if b.sent_ms.is_some() {
        println!(
            "  pause (ms after the source stopped): continued {}, sent {} ({:.1} MiB), commit asked {}, received {}, state arrived {}, resumed {}",
            opt_ms(b.continued_ms),
            opt_ms(b.sent_ms),
            b.bytes.unwrap_or(0) as f64 / 1048576.0,
            opt_ms(b.commit_asked_ms),
            opt_ms(b.commit_received_ms),
            opt_ms(b.arrived_ms),
            opt_ms(b.resumed_ms)
        );
    }
    for p in &r.paths {
        println!("  path {:<8} {:.1} MiB", p.name, p.bytes as f64 / 1048576.0);
    }
    if let Some(n) = &r.network {
        let at = |ms: Option<u64>| {
            ms.map_or_else(|| "-".to_string(), |m| format!("{:.1}s", m as f64 / 1000.0))
        };
        println!(
            "  network: {} -> {} ({}), announced at {}{}, old address retired at {}, {} connections moved, {} still on the old address",
            n.old_address,
            n.new_address,
            n.handoff,
            at(n.announced_ms),
            match n.reannounced {
                0 => String::new(),
                k => format!(" (and {k} more times)"),
            },
            at(n.retired_ms),
            n.moved,
            n.on_old
        );
    }
    if let Some(e) = &r.error {
        println!("  error: {e}");
    }
}

/// Runs `edgemig migrations`.
pub async fn list(client: &ApiClient, json: bool) -> anyhow::Result<()> {
    let views = client.migrations().await?;
    if json {
        return output::json(&views);
    }
    println!(
        "{:<16} {:<16} {:<10} {:<16} {:>9} {:>10}  NOTE",
        "ID", "VM", "TO", "STATUS", "TOTAL", "DOWNTIME"
    );
    for v in views {
        let (status, total, downtime) = match &v.report {
            Some(r) => (
                format!("{:?}", r.status).to_lowercase(),
                format!("{:.1}s", r.total_ms as f64 / 1000.0),
                r.downtime_ms
                    .map_or_else(|| "-".into(), |d| format!("{d}ms")),
            ),
            None => (
                v.phase.clone().unwrap_or_else(|| "starting".into()),
                "-".into(),
                "-".into(),
            ),
        };
        println!(
            "{:<16} {:<16} {:<10} {:<16} {:>9} {:>10}  {}",
            v.id,
            v.vm,
            v.to,
            status,
            total,
            downtime,
            v.note.as_deref().unwrap_or("")
        );
    }
    Ok(())
}
