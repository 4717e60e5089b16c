//! `edgemig bench ...`: benchmarks that measure edgemig against a baseline
//! in the same run, on testbeds they build and remove themselves.

use std::path::PathBuf;

use clap::Subcommand;
use edgemig_bench::migrate::RootImage;
use edgemig_bench::{
    DiskSetup, HandoffOptions, LinksOptions, LinksReport, LinksRun, MigrateBenchOptions,
    MigrateBenchReport, PaperOptions, Scenario, run_handoff_bench, run_links, run_migrate_bench,
    run_paper,
};
use edgemig_testbed::TestbedConfig;

use super::image::target_dir;
use super::image_cache::debian12;
use super::output;

/// Benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// The follow policy on a commuting client against never migrating and
    /// migrating at every change: excess RTT, migrations, bytes moved.
    Follow(super::bench_follow::FollowArgs),
    /// Many back-and-forth migrations with alice's clients live, the VM
    /// verified after each; with --faults, seeded agent kills, path cuts
    /// and cancels. Reports split brain, lost connections, failed
    /// verifications, leaks and the longest stall.
    Soak(super::bench_soak::SoakArgs),
    /// The testbed's emulated links: throughput and RTT vs configured, emulator
    /// CPU, MPTCP over all paths vs TCP over one.
    Links {
        /// Testbed config to measure [default: the default testbed].
        #[arg(long)]
        config: Option<PathBuf>,
        /// Seconds per throughput measurement.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Path rates (Mbit/s) to repeat the run with; `--sweep ''` for none.
        #[arg(long, value_delimiter = ',', default_value = "10,50,200")]
        sweep: Vec<String>,
        /// The traffic tool [default: <target>/x86_64-unknown-linux-gnu/release/edgemig-guest].
        #[arg(long)]
        tool: Option<PathBuf>,
        /// Skip the second measurement of the paths with a busy TCG guest.
        #[arg(long)]
        no_busy_guest: bool,
    },
    /// What the network handoff gives a client: RTT and throughput after a
    /// migration with and without it, against the direct path.
    Handoff {
        /// Testbed config [default: the default testbed].
        #[arg(long)]
        config: Option<PathBuf>,
        /// Seconds per throughput measurement.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
    },
    /// Migration time of edgemig (MPTCP, MPTCP + compression auto) against
    /// plain QEMU over one TCP connection and QEMU's best single-path setups
    /// (multifd, multifd + zstd over one TCP path), per scenario, in the same
    /// run: medians of --repeat runs, the client's stall during the auto runs.
    Migrate {
        /// Testbed config [default: the default testbed].
        #[arg(long)]
        config: Option<PathBuf>,
        /// Scenarios: idle, disk, dirty, uneven-paths [default: all four;
        /// idle with --image debian12, which runs idle and disk only].
        #[arg(long, value_delimiter = ',')]
        scenarios: Option<Vec<String>>,
        /// The guest: busybox (built in) or debian12 (the demo's Debian 12
        /// image, built or taken from the cache, imported at both sites).
        #[arg(long, value_enum, default_value_t = BenchImage::Busybox)]
        image: BenchImage,
        /// Guest RAM in MiB [default: 512; 1024 with --image debian12].
        #[arg(long)]
        memory_mib: Option<u64>,
        /// Mixed data held in guest memory, MiB.
        #[arg(long, default_value_t = 300)]
        fill_mib: u32,
        /// Data disk size (MiB) for the disk scenario.
        #[arg(long, default_value_t = 2048)]
        disk_mib: u64,
        /// Data written to the disk (MiB) for the disk scenario.
        #[arg(long, default_value_t = 512)]
        disk_written_mib: u32,
        /// Data in the disk's base image (MiB); 0 for no base image.
        #[arg(long, default_value_t = 256)]
        disk_base_mib: u32,
        /// Leave the base image out of the destination's cache (the whole
        /// disk then travels).
        #[arg(long)]
        no_base_at_destination: bool,
        /// Seconds after which a migration is cancelled (reported as null).
        #[arg(long, default_value_t = 600)]
        limit_s: u64,
        /// Runs per system and scenario; each figure is their median (with
        /// min and max).
        #[arg(long, default_value_t = 3)]
        repeat: u32,
    },
    /// The paper's evaluation with its baselines in the same run: migration
    /// time vs bandwidth and vs memory size, the client after a migration with
    /// and without handoff, a data disk with and without a cached base image.
    /// Writes results.json, results.md and PNG + SVG plots.
    Paper(PaperArgs),
}

/// The guest `bench migrate` migrates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchImage {
    /// The built-in busybox guest (kernel + initramfs).
    Busybox,
    /// The Debian 12 image of the demo.
    Debian12,
}

impl BenchImage {
    /// Guest RAM when `--memory-mib` is not given.
    fn default_memory_mib(self) -> u64 {
        match self {
            Self::Busybox => 512,
            Self::Debian12 => 1024,
        }
    }

    /// Scenarios when `--scenarios` is not given.
    fn default_scenarios(self) -> Vec<Scenario> {
        match self {
            Self::Busybox => vec![
                Scenario::Idle,
                Scenario::Disk,
                Scenario::Dirty,
                Scenario::UnevenPaths,
            ],
            Self::Debian12 => vec![Scenario::Idle],
        }
    }
}

/// The scenarios named, or the image's default ones.
fn scenarios_of(names: Option<&[String]>, image: BenchImage) -> anyhow::Result<Vec<Scenario>> {
    let Some(names) = names else {
        return Ok(image.default_scenarios());
    };
    names
        .iter()
        .map(|s| {
            Scenario::parse(s).ok_or_else(|| {
                anyhow::anyhow!("Unknown scenario {s:?}: use idle, disk, dirty, uneven-paths")
            })
        })
        .collect()
}

/// Options of `bench paper`.
#[derive(Debug, clap::Args)]
pub struct PaperArgs {
    /// Run one point per figure with small guests (a few minutes).
    #[arg(long)]
    quick: bool,
    /// Output directory [default: bench-results/paper-<UTC timestamp>].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write into a non-empty output directory.
    #[arg(long)]
    force: bool,
    /// Runs per point; each point is their median.
    #[arg(long, default_value_t = 1)]
    repeat: u32,
    /// Testbed config [default: the default testbed].
    #[arg(long)]
    config: Option<PathBuf>,
    /// Seconds after which a migration is cancelled (its run counts as
    /// missing; a point without runs is null).
    #[arg(long, default_value_t = 600)]
    limit_s: u64,
}

/// Runs `bench paper`: prints the Markdown tables (or, with `--json`,
/// results.json) and where the output went.
async fn run_paper_cmd(args: PaperArgs, json: bool) -> anyhow::Result<()> {
    let exe_dir = std::env::current_exe()?
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default();
    let target = target_dir();
    let opts = PaperOptions {
        config: match args.config {
            Some(path) => TestbedConfig::load(&path)?,
            None => TestbedConfig::default_config(),
        },
        quick: args.quick,
        repeat: args.repeat,
        limit: std::time::Duration::from_secs(args.limit_s),
        out_dir: args
            .out
            .unwrap_or_else(edgemig_bench::paper::default_out_dir),
        force: args.force,
        agent: exe_dir.join("edgemigd"),
        linkemu: exe_dir.join("edgemig-linkemu"),
        image_dir: target.join("guest-image"),
        tool: target.join("x86_64-unknown-linux-gnu/release/edgemig-guest"),
    };
    // Dropping the run on Ctrl-C removes its testbeds (their guards).
    let out = tokio::select! {
        r = run_paper(&opts) => r?,
        _ = tokio::signal::ctrl_c() => anyhow::bail!(
            "Interrupted; the benchmark's testbeds were removed; partial results are in {}",
            opts.out_dir.display()
        ),
    };
    if json {
        output::json(&out.results)?;
    } else {
        println!("{}", out.markdown);
        println!("Results, tables and plots: {}", out.out_dir.display());
    }
    anyhow::ensure!(
        out.results.failures.is_empty(),
        "{} measurement(s) failed (their points are null): {}",
        out.results.failures.len(),
        out.results.failures.join("; ")
    );
    Ok(())
}

/// Runs a benchmark.
pub async fn run(cmd: BenchCommand, json: bool) -> anyhow::Result<()> {
    let (config, seconds, sweep, tool, no_busy_guest) = match cmd {
        BenchCommand::Follow(args) => return super::bench_follow::run(args, json).await,
        BenchCommand::Soak(args) => return super::bench_soak::run(args, json).await,
        BenchCommand::Paper(args) => return run_paper_cmd(args, json).await,
        BenchCommand::Links {
            config,
            seconds,
            sweep,
            tool,
            no_busy_guest,
        } => (config, seconds, sweep, tool, no_busy_guest),
        BenchCommand::Handoff { config, seconds } => {
            let exe_dir = std::env::current_exe()?
                .parent()
                .map(PathBuf::from)
                .unwrap_or_default();
            let target = target_dir();
            let opts = HandoffOptions {
                config: match config {
                    Some(path) => TestbedConfig::load(&path)?,
                    None => TestbedConfig::default_config(),
                },
                seconds,
                agent: exe_dir.join("edgemigd"),
                linkemu: exe_dir.join("edgemig-linkemu"),
                image_dir: target.join("guest-image"),
                tool: target.join("x86_64-unknown-linux-gnu/release/edgemig-guest"),
            };
            let r = run_handoff_bench(&opts).await?;
            if json {
                return output::json(&r);
            }
            println!(
                "client session survived: {} ({} errors), longest stall {} ms, p99 gap {} ms (10 ms probes)",
                r.survived, r.errors, r.max_stall_ms, r.stall_p99_ms
            );
            println!("{:<22} {:>10} {:>10}", "", "RTT ms", "Mbit/s");
            println!(
                "{:<22} {:>10.1} {:>10.1}",
                "before (far site)", r.rtt_before_ms, r.mbit_before
            );
            println!(
                "{:<22} {:>10.1} {:>10.1}",
                "10 s after, handoff", r.rtt_after_ms, r.mbit_after
            );
            println!(
                "{:<22} {:>10.1} {:>10.1}",
                "10 s after, tunnel", r.rtt_no_handoff_ms, r.mbit_no_handoff
            );
            println!(
                "{:<22} {:>10.1} {:>10.1}",
                "direct path", r.rtt_direct_ms, r.mbit_direct
            );
            println!(
                "{:<22} {:>10.1} {:>10.1}",
                "VM there from start", r.rtt_reference_vm_ms, r.mbit_reference_vm
            );
            println!(
                "handoff vs tunnel: {:.1}x throughput; after the handoff vs a VM there from the start: {:.0}% of its throughput, RTT {:+.1} ms",
                r.mbit_after / r.mbit_no_handoff.max(f64::MIN_POSITIVE),
                100.0 * r.mbit_after / r.mbit_reference_vm.max(f64::MIN_POSITIVE),
                r.rtt_after_ms - r.rtt_reference_vm_ms
            );
            return Ok(());
        }
        BenchCommand::Migrate {
            config,
            scenarios,
            image,
            memory_mib,
            fill_mib,
            disk_mib,
            disk_written_mib,
            disk_base_mib,
            no_base_at_destination,
            limit_s,
            repeat,
        } => {
            let scenarios = scenarios_of(scenarios.as_deref(), image)?;
            let exe_dir = std::env::current_exe()?
                .parent()
                .map(PathBuf::from)
                .unwrap_or_default();
            let mut opts = MigrateBenchOptions {
                config: match config {
                    Some(path) => TestbedConfig::load(&path)?,
                    None => TestbedConfig::default_config(),
                },
                scenarios,
                memory_mib: memory_mib.unwrap_or_else(|| image.default_memory_mib()),
                fill_mib,
                disk: DiskSetup {
                    disk_mib,
                    written_mib: disk_written_mib,
                    base_mib: disk_base_mib,
                    base_at_destination: !no_base_at_destination,
                },
                repeat,
                limit: std::time::Duration::from_secs(limit_s),
                agent: exe_dir.join("edgemigd"),
                linkemu: exe_dir.join("edgemig-linkemu"),
                image_dir: target_dir().join("guest-image"),
                tool: target_dir().join("x86_64-unknown-linux-gnu/release/edgemig-guest"),
                // Its path is set once the image is built.
                root_image: (image == BenchImage::Debian12).then(|| RootImage {
                    name: "debian12".into(),
                    path: PathBuf::new(),
                }),
            };
            // Bad options fail before the image is built.
            edgemig_bench::migrate::validate(&opts)?;
            // The image copy lives until the benchmark is over.
            let _scratch = match opts.root_image.as_mut() {
                Some(root) => {
                    let (scratch, built) = debian12("bench").await?;
                    root.path = built.path;
                    Some(scratch)
                }
                None => None,
            };
            // Dropping the run on Ctrl-C removes its testbed (its guard).
            let report = tokio::select! {
                r = run_migrate_bench(&opts) => r?,
                _ = tokio::signal::ctrl_c() => anyhow::bail!("Interrupted; the benchmark's testbed was removed"),
            };
            if json {
                return output::json(&report);
            }
            print_migrate(&report);
            return Ok(());
        }
    };
    anyhow::ensure!(
        seconds > 0.0 && seconds <= 600.0,
        "--seconds must be in (0, 600]"
    );
    let sweep_mbit = sweep
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<u64>().map_err(|_| {
                anyhow::anyhow!("Invalid --sweep rate {s:?}: Mbit/s as a whole number")
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let exe_dir = std::env::current_exe()?
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default();
    let target = target_dir();
    let opts = LinksOptions {
        config: match config {
            Some(path) => TestbedConfig::load(&path)?,
            None => TestbedConfig::default_config(),
        },
        seconds,
        sweep_mbit,
        agent: exe_dir.join("edgemigd"),
        linkemu: exe_dir.join("edgemig-linkemu"),
        image_dir: target.join("guest-image"),
        tool: tool.unwrap_or_else(|| target.join("x86_64-unknown-linux-gnu/release/edgemig-guest")),
        loaded: !no_busy_guest,
    };
    let report = run_links(&opts).await?;
    if json {
        return output::json(&report);
    }
    print_report(&report);
    Ok(())
}

fn print_run(title: &str, run: &LinksRun) {
    println!("{title}");
    print_paths(&run.paths);
    println!(
        "  MPTCP over all paths {:.1} Mb/s vs TCP over path1 {:.1} Mb/s: {:.2}x; emulator CPU {:.1}% of a core per 100 Mb/s",
        run.mptcp_mbit,
        run.tcp_mbit,
        run.mptcp_speedup,
        100.0 * run.emulator_cpu_per_100mbit
    );
}

fn print_paths(paths: &[edgemig_bench::links::PathResult]) {
    println!(
        "  {:<8} {:>10} {:>14} {:>9} {:>9} {:>9} {:>10}",
        "path", "rate Mb/s", "measured Mb/s", "ratio", "2xdelay", "RTT ms", "tolerance"
    );
    for p in paths {
        println!(
            "  {:<8} {:>10.1} {:>14.1} {:>8.1}% {:>9.1} {:>9.2} {:>10}",
            p.name,
            p.rate_mbit,
            p.measured_mbit,
            100.0 * p.measured_mbit / p.rate_mbit.max(f64::MIN_POSITIVE),
            2.0 * p.delay_ms,
            p.rtt_ms,
            if p.within_tolerance {
                "within"
            } else {
                "outside"
            }
        );
    }
}

fn print_report(report: &LinksReport) {
    print_run(
        &format!("config ({} s per measurement)", report.seconds),
        &report.main,
    );
    if let Some(loaded) = &report.loaded {
        println!(
            "with {} (its QEMU used {:.2} cores)",
            loaded.guest, loaded.guest_cpu_cores
        );
        print_paths(&loaded.paths);
    }
    println!(
        "tolerances: rate within {}% of the configured rate, RTT within {} ms of 2 x delay",
        report.tolerances.rate_pct, report.tolerances.rtt_ms
    );
    for point in &report.sweep {
        print_run(
            &format!("every path at {} Mbit/s", point.path_rate_mbit),
            &point.run,
        );
    }
}

fn print_migrate(report: &MigrateBenchReport) {
    let secs = |v: Option<u64>| {
        v.map_or_else(
            || "-".to_string(),
            |ms| format!("{:.1}", ms as f64 / 1000.0),
        )
    };
    let time = |m: Option<u64>, lo: Option<u64>, hi: Option<u64>| match (m, lo, hi) {
        (Some(_), Some(lo), Some(hi)) if lo != hi => {
            format!("{}s [{}-{}]", secs(m), secs(Some(lo)), secs(Some(hi)))
        }
        (Some(_), _, _) => format!("{}s", secs(m)),
        _ => "-".to_string(),
    };
    let x = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |r| format!("{r:.2}x"));
    let ms = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |d| format!("{d}ms"));
    println!("{}", report.conditions);
    println!(
        "{:<13} {:>20} {:>20} {:>20} {:>20} {:>20}",
        "scenario", "baseline", "multifd_tcp", "best_single_path", "mptcp", "auto"
    );
    for r in &report.runs {
        println!(
            "{:<13} {:>20} {:>20} {:>20} {:>20} {:>20}",
            r.scenario,
            time(r.baseline_ms, r.baseline_ms_min, r.baseline_ms_max),
            time(r.multifd_tcp_ms, r.multifd_tcp_ms_min, r.multifd_tcp_ms_max),
            time(
                r.best_single_path_ms,
                r.best_single_path_ms_min,
                r.best_single_path_ms_max
            ),
            time(r.mptcp_ms, r.mptcp_ms_min, r.mptcp_ms_max),
            time(r.auto_ms, r.auto_ms_min, r.auto_ms_max),
        );
    }
    println!(
        "{:<13} {:>8} {:>8} {:>10} {:>10} {:>9} {:>9} {:>8} {:>9} {:>9} {:>9}",
        "scenario",
        "x mptcp",
        "x auto",
        "mptcp/mfd",
        "auto/best",
        "downtime",
        "qemu dt",
        "fixed",
        "stall",
        "stall p99",
        "agg share"
    );
    for r in &report.runs {
        println!(
            "{:<13} {:>8} {:>8} {:>10} {:>10} {:>9} {:>9} {:>8} {:>9} {:>9} {:>9}",
            r.scenario,
            x(r.speedup_mptcp),
            x(r.speedup_auto),
            x(r.speedup_mptcp_vs_multifd_tcp),
            x(r.speedup_auto_vs_best_single_path),
            ms(r.downtime_ms),
            ms(r.qemu_downtime_ms),
            ms(r.fixed_ms),
            ms(r.client_stall_ms),
            ms(r.client_stall_p99_ms),
            r.aggregate_share
                .map_or_else(|| "-".to_string(), |s| format!("{:.0}%", s * 100.0)),
        );
    }
    let mib = |b: Option<u64>| {
        b.map_or_else(
            || "-".to_string(),
            |b| format!("{:.1} MiB", b as f64 / 1_048_576.0),
        )
    };
    for r in report
        .runs
        .iter()
        .filter(|r| r.root_overlay_bytes.is_some())
    {
        println!(
            "{}: root disk overlay sent by the auto runs {} [{}-{}] ({} image at both sites)",
            r.scenario,
            mib(r.root_overlay_bytes),
            mib(r.root_overlay_bytes_min),
            mib(r.root_overlay_bytes_max),
            report.image
        );
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn migrate_args(args: &[&str]) -> (Option<Vec<String>>, BenchImage, Option<u64>) {
        let cli = Cli::try_parse_from(["edgemig", "bench", "migrate"].iter().chain(args)).unwrap();
        match cli.command {
            Command::Bench(BenchCommand::Migrate {
                scenarios,
                image,
                memory_mib,
                ..
            }) => (scenarios, image, memory_mib),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn image_flag_sets_the_guest_and_its_defaults() {
        let (scenarios, image, memory) = migrate_args(&[]);
        assert_eq!(image, BenchImage::Busybox);
        assert_eq!(memory.unwrap_or(image.default_memory_mib()), 512);
        assert_eq!(scenarios_of(scenarios.as_deref(), image).unwrap().len(), 4);
        let (scenarios, image, memory) = migrate_args(&["--image", "debian12"]);
        assert_eq!(image, BenchImage::Debian12);
        assert_eq!(memory.unwrap_or(image.default_memory_mib()), 1024);
        assert_eq!(
            scenarios_of(scenarios.as_deref(), image).unwrap(),
            [Scenario::Idle]
        );
        let (scenarios, image, memory) = migrate_args(&[
            "--image",
            "debian12",
            "--memory-mib",
            "768",
            "--scenarios",
            "idle,disk",
        ]);
        assert_eq!(memory, Some(768));
        assert_eq!(
            scenarios_of(scenarios.as_deref(), image).unwrap(),
            [Scenario::Idle, Scenario::Disk]
        );
        assert!(scenarios_of(Some(&["busy".into()]), image).is_err());
        assert!(Cli::try_parse_from(["edgemig", "bench", "migrate", "--image", "ubuntu"]).is_err());
    }
}
