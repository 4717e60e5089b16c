//! `edgemig bench migrate`: migration time of edgemig (MPTCP over all
//! paths, with and without `--compression auto`) against plain QEMU over
//! one TCP connection and against QEMU's best single-path setups (multifd
//! over one TCP path, without and with zstd), all in the same run on the
//! same testbed and the same guest, each the median of `repeat` runs with
//! the order of the systems reversed every other repetition. During the `auto` runs
//! the config's first client keeps an echo session to the VM (10 ms
//! probes): its stall is reported next to the downtime. The guest is the
//! built-in busybox one or, with a root image, a VM booting that image
//! (cached at both sites, so only its overlay travels).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use edgemig_migration::{MigrationReport, PostcopyPolicy, ReportStatus};
use edgemig_testbed::TestbedConfig;
use edgemig_testbed::units::parse_rate;
use serde::Serialize;

use crate::paper::summarize;
use crate::runner::{
    Binaries, ClientWatch, Guest, System, SystemRun, Workload, counterbalanced, run_systems_booting,
};

/// Errors of the benchmark.
#[derive(Debug, thiserror::Error)]
pub enum MigrateBenchError {
    /// The testbed could not be built.
    #[error("Cannot bring the benchmark testbed up")]
    Testbed(#[from] edgemig_testbed::TestbedError),
    /// An agent request failed.
    #[error("Agent request failed: {0}")]
    Api(#[from] edgemig_api::ClientError),
    /// A migration did not end in time.
    #[error("Migration of the benchmark VM did not finish within {0:?}")]
    Timeout(Duration),
    /// The VM booting the root image never got its guest agent up.
    #[error("The benchmark VM's guest agent did not answer within {0:?} of its start")]
    Boot(Duration),
    /// The config is unusable.
    #[error("{0}")]
    Config(String),
}

/// A benchmark scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// 512 MiB guest holding 300 MiB of mixed data, idle.
    Idle,
    /// The idle guest plus a data disk with data written to it.
    Disk,
    /// A guest writing memory as fast as it can.
    Dirty,
    /// The idle guest over paths of 50 and 20 Mbit/s.
    UnevenPaths,
}

impl Scenario {
    /// Name in the report (a contract).
    pub fn name(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Disk => "disk",
            Self::Dirty => "dirty",
            Self::UnevenPaths => "uneven-paths",
        }
    }

    /// Parses a name.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Idle, Self::Disk, Self::Dirty, Self::UnevenPaths]
            .into_iter()
            .find(|x| x.name() == s)
    }
}

/// Most runs per system and scenario accepted.
pub const MAX_REPEAT: u32 = 20;

/// What to run.
#[derive(Debug, Clone)]
pub struct MigrateBenchOptions {
    /// The topology; its first two sites and their paths are used, and its
    /// first client (if any) watches the `auto` runs.
    pub config: TestbedConfig,
    /// Scenarios to run.
    pub scenarios: Vec<Scenario>,
    /// Guest RAM in MiB.
    pub memory_mib: u64,
    /// Data held in guest memory, MiB.
    pub fill_mib: u32,
    /// The data disk of the disk scenario.
    pub disk: DiskSetup,
    /// Runs per system and scenario (1..=[`MAX_REPEAT`]); each figure is
    /// their median.
    pub repeat: u32,
    /// Longest time one migration may take before it is cancelled.
    pub limit: Duration,
    /// `edgemigd` binary.
    pub agent: PathBuf,
    /// `edgemig-linkemu` binary.
    pub linkemu: PathBuf,
    /// Guest image.
    pub image_dir: PathBuf,
    /// The traffic tool (`edgemig-guest`) of the watching client.
    pub tool: PathBuf,
    /// A disk image the VM boots instead of the built-in guest (imported
    /// at both sites); only the idle and disk scenarios run with one.
    pub root_image: Option<RootImage>,
}

/// A disk image the benchmark VM boots (with the guest agent installed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootImage {
    /// Its name in the sites' caches and in the report (`debian12`).
    pub name: String,
    /// The image file (raw or qcow2, read by the agents).
    pub path: PathBuf,
}

/// The scenarios a VM booting a root image runs.
pub const ROOT_IMAGE_SCENARIOS: [Scenario; 2] = [Scenario::Idle, Scenario::Disk];

/// The data disk of the disk scenario: an overlay of `disk_mib` on a base
/// image holding `base_mib` of data, with `written_mib` written on top.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskSetup {
    /// Disk size, MiB.
    pub disk_mib: u64,
    /// Data the guest writes (from offset 0), MiB.
    pub written_mib: u32,
    /// Data in the base image (placed after the written region), MiB; 0
    /// for a disk without a base image.
    pub base_mib: u32,
    /// Whether the destination site holds the base image too (else the
    /// whole disk travels, `sync: full`).
    pub base_at_destination: bool,
}

impl Default for DiskSetup {
    fn default() -> Self {
        Self {
            disk_mib: 2048,
            written_mib: 512,
            base_mib: 256,
            base_at_destination: true,
        }
    }
}

/// One scenario's line (field names are a contract; `null` where a field
/// does not apply or no run of that system completed). Every figure `X` is
/// the median of the completed runs, with `X_min` and `X_max` beside it;
/// speedups are ratios of medians.
#[derive(Debug, Clone, Serialize)]
pub struct MigrateRun {
    /// Scenario name.
    pub scenario: String,
    /// Plain QEMU: one TCP connection, no multifd, no compression.
    pub baseline_ms: Option<u64>,
    /// Smallest `baseline` run.
    pub baseline_ms_min: Option<u64>,
    /// Largest `baseline` run.
    pub baseline_ms_max: Option<u64>,
    /// QEMU with multifd (4 channels) over one TCP path, no compression.
    pub multifd_tcp_ms: Option<u64>,
    /// Smallest `multifd_tcp` run.
    pub multifd_tcp_ms_min: Option<u64>,
    /// Largest `multifd_tcp` run.
    pub multifd_tcp_ms_max: Option<u64>,
    /// QEMU's best single-path setup: multifd (4) + zstd over one TCP path.
    pub best_single_path_ms: Option<u64>,
    /// Smallest `best_single_path` run.
    pub best_single_path_ms_min: Option<u64>,
    /// Largest `best_single_path` run.
    pub best_single_path_ms_max: Option<u64>,
    /// edgemig over MPTCP, no compression.
    pub mptcp_ms: Option<u64>,
    /// Smallest `mptcp` run.
    pub mptcp_ms_min: Option<u64>,
    /// Largest `mptcp` run.
    pub mptcp_ms_max: Option<u64>,
    /// edgemig over MPTCP, `--compression auto`.
    pub auto_ms: Option<u64>,
    /// Smallest `auto` run.
    pub auto_ms_min: Option<u64>,
    /// Largest `auto` run.
    pub auto_ms_max: Option<u64>,
    /// `baseline_ms / mptcp_ms`.
    pub speedup_mptcp: Option<f64>,
    /// `baseline_ms / auto_ms`.
    pub speedup_auto: Option<f64>,
    /// `multifd_tcp_ms / mptcp_ms`: what MPTCP adds to multifd alone.
    pub speedup_mptcp_vs_multifd_tcp: Option<f64>,
    /// `best_single_path_ms / auto_ms`: edgemig against QEMU's best over
    /// one path.
    pub speedup_auto_vs_best_single_path: Option<f64>,
    /// Downtime of the `auto` runs (the report's `downtime_ms`: source
    /// `STOP` to destination `RESUME`).
    pub downtime_ms: Option<u64>,
    /// Smallest `auto` downtime.
    pub downtime_ms_min: Option<u64>,
    /// Largest `auto` downtime.
    pub downtime_ms_max: Option<u64>,
    /// QEMU's own downtime figure of the `auto` runs.
    pub qemu_downtime_ms: Option<u64>,
    /// Smallest `auto` QEMU downtime.
    pub qemu_downtime_ms_min: Option<u64>,
    /// Largest `auto` QEMU downtime.
    pub qemu_downtime_ms_max: Option<u64>,
    /// The `auto` runs' cost besides the copy (the report's `fixed_ms`).
    pub fixed_ms: Option<u64>,
    /// Smallest `auto` fixed cost.
    pub fixed_ms_min: Option<u64>,
    /// Largest `auto` fixed cost.
    pub fixed_ms_max: Option<u64>,
    /// The watching client's longest time without an echo answer during
    /// an `auto` migration (10 ms probes; from the request to the report).
    pub client_stall_ms: Option<u64>,
    /// Smallest of the runs' longest stalls.
    pub client_stall_ms_min: Option<u64>,
    /// Largest of the runs' longest stalls.
    pub client_stall_ms_max: Option<u64>,
    /// The 99th percentile of the client's gaps between answers during an
    /// `auto` migration.
    pub client_stall_p99_ms: Option<u64>,
    /// Smallest of the runs' 99th percentiles.
    pub client_stall_p99_ms_min: Option<u64>,
    /// Largest of the runs' 99th percentiles.
    pub client_stall_p99_ms_max: Option<u64>,
    /// The watching client's connection errors over all `auto` runs
    /// (`null` when no run was watched).
    pub client_errors: Option<u64>,
    /// Share of the paths' aggregate rate the MPTCP runs achieved (median;
    /// uneven paths only).
    pub aggregate_share: Option<f64>,
    /// Bytes the root disk's mirror copied in the `auto` runs (with the
    /// image at both sites, `sync: top`: only the VM's own writes on top
    /// of it); `null` for the built-in guest, which has no root disk.
    pub root_overlay_bytes: Option<u64>,
    /// Smallest `auto` root overlay.
    pub root_overlay_bytes_min: Option<u64>,
    /// Largest `auto` root overlay.
    pub root_overlay_bytes_max: Option<u64>,
    /// Runs per system that completed (the medians' n).
    pub completed: BTreeMap<String, u32>,
    /// Runs per system attempted.
    pub attempted: BTreeMap<String, u32>,
    /// Full reports of each run, in the order they ran.
    pub reports: Vec<MigrationReport>,
    /// The system of each entry of `reports`.
    pub report_systems: Vec<String>,
    /// The client's longest stall in each entry of `reports` (`null` where
    /// it did not watch), to set beside that run's downtime.
    pub report_stalls_ms: Vec<Option<u64>>,
}

/// The whole benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct MigrateBenchReport {
    /// One line per scenario.
    pub runs: Vec<MigrateRun>,
    /// Runs per system and scenario asked for.
    pub repeat: u32,
    /// The guest: `busybox` (built in) or the root image's name.
    pub image: String,
    /// Conditions, in words.
    pub conditions: String,
}

/// Median, minimum and maximum of some whole-number samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Spread {
    /// Median (the mean of the middle two, rounded, for an even count).
    pub median: Option<u64>,
    /// Smallest.
    pub min: Option<u64>,
    /// Largest.
    pub max: Option<u64>,
}

/// The spread of `samples`.
pub(crate) fn spread(samples: &[u64]) -> Spread {
    let f: Vec<f64> = samples.iter().map(|v| *v as f64).collect();
    let s = summarize(&f);
    let whole = |v: Option<f64>| v.map(|v| v.round() as u64);
    Spread {
        median: whole(s.median),
        min: whole(s.min),
        max: whole(s.max),
    }
}

fn ratio(a: Option<u64>, b: Option<u64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0 => Some(a as f64 / b as f64),
        _ => None,
    }
}

/// Checks the options before anything is built.
pub fn validate(opts: &MigrateBenchOptions) -> Result<(), MigrateBenchError> {
    if opts.config.sites.len() < 2 || opts.config.paths.is_empty() {
        return Err(MigrateBenchError::Config(
            "The config needs two sites joined by paths".into(),
        ));
    }
    if !(1..=MAX_REPEAT).contains(&opts.repeat) {
        return Err(MigrateBenchError::Config(format!(
            "--repeat must be between 1 and {MAX_REPEAT}"
        )));
    }
    if let Some(root) = &opts.root_image {
        let other: Vec<&str> = opts
            .scenarios
            .iter()
            .filter(|s| !ROOT_IMAGE_SCENARIOS.contains(s))
            .map(|s| s.name())
            .collect();
        if !other.is_empty() {
            return Err(MigrateBenchError::Config(format!(
                "With the {} image only the idle and disk scenarios run (not {}): the others need the built-in guest",
                root.name,
                other.join(", ")
            )));
        }
    }
    Ok(())
}

/// Runs the benchmark.
pub async fn run_migrate_bench(
    opts: &MigrateBenchOptions,
) -> Result<MigrateBenchReport, MigrateBenchError> {
    validate(opts)?;
    let image = opts
        .root_image
        .as_ref()
        .map_or_else(|| "busybox".to_string(), |r| r.name.clone());
    let guest = match &opts.root_image {
        None => "built-in busybox guest".to_string(),
        Some(r) => format!(
            "guest booting the {} image (cached at both sites: the root disk's overlay travels, sync top)",
            r.name
        ),
    };
    let mut runs = Vec::new();
    for &scenario in &opts.scenarios {
        let mut config = opts.config.clone();
        if scenario == Scenario::UnevenPaths {
            for (i, p) in config.paths.iter_mut().enumerate() {
                p.shape.rate = if i == 0 { "50mbit" } else { "20mbit" }.into();
            }
        }
        runs.push(run_scenario(opts, scenario, &config).await?);
    }
    Ok(MigrateBenchReport {
        runs,
        repeat: opts.repeat,
        image,
        conditions: format!(
            "testbed paths as configured ({}), {} MiB {guest} holding {} MiB of mixed data (half random, half text), TCG guests, TLS on the data path for every system; systems: baseline = plain QEMU over one TCP connection; multifd_tcp = multifd 4 over one TCP path; best_single_path = multifd 4 + zstd over one TCP path; mptcp = edgemig over MPTCP, no compression; auto = edgemig over MPTCP + compression auto; {} run(s) per system, the order reversed every other repetition and the VM moving back and forth; medians with min and max; client stall: {}'s echo session to the VM (10 ms probes) during the auto runs",
            opts.config
                .paths
                .iter()
                .map(|p| format!("{} {}", p.shape.rate, p.shape.delay))
                .collect::<Vec<_>>()
                .join(" + "),
            opts.memory_mib,
            opts.fill_mib,
            opts.repeat,
            opts.config
                .clients
                .first()
                .map_or("no client", |c| c.name.as_str()),
        ),
    })
}

/// The systems of a scenario.
fn systems_of(scenario: Scenario) -> Vec<System> {
    if scenario == Scenario::Dirty {
        // A guest dirtying memory flat out converges only with postcopy as
        // the last resort (auto-converge throttling is not enough under
        // TCG); postcopy means no multifd, so the single-path systems
        // would not differ from the baseline.
        vec![System {
            postcopy: PostcopyPolicy::Fallback,
            ..System::AUTO
        }]
    } else {
        vec![
            System::BASELINE,
            System::MULTIFD_TCP,
            System::BEST_SINGLE_PATH,
            System::MPTCP,
            System::AUTO,
        ]
    }
}

async fn run_scenario(
    opts: &MigrateBenchOptions,
    scenario: Scenario,
    config: &TestbedConfig,
) -> Result<MigrateRun, MigrateBenchError> {
    let name = format!(
        "bm{}{}",
        std::process::id() % 100_000,
        scenario.name().len()
    );
    let workload = Workload {
        memory_mib: opts.memory_mib,
        fill_mib: if scenario == Scenario::Dirty {
            0
        } else {
            opts.fill_mib
        },
        mem_write: (scenario == Scenario::Dirty).then_some((128, None)),
        disk: (scenario == Scenario::Disk).then_some(opts.disk),
    };
    let systems = systems_of(scenario);
    let binaries = Binaries {
        agent: opts.agent.clone(),
        linkemu: opts.linkemu.clone(),
        image_dir: opts.image_dir.clone(),
    };
    let watch = ClientWatch {
        tool: opts.tool.clone(),
        labels: vec![System::AUTO.label],
    };
    let guest = Guest {
        workload: &workload,
        root_image: opts.root_image.as_ref().map(|r| r.path.as_path()),
    };
    let runs = run_systems_booting(
        &name,
        config,
        &binaries,
        guest,
        &counterbalanced(&systems, opts.repeat),
        opts.limit,
        Some(&watch),
    )
    .await?;
    let aggregate_bps: u64 = config
        .paths
        .iter()
        .map(|p| parse_rate(&p.shape.rate).unwrap_or(0))
        .sum();
    let mut line = summarize_runs(scenario, &runs, aggregate_bps);
    for s in &systems {
        line.attempted.insert(s.label.into(), opts.repeat);
    }
    Ok(line)
}

/// The scenario's line from its runs.
fn summarize_runs(scenario: Scenario, runs: &[SystemRun], aggregate_bps: u64) -> MigrateRun {
    let done = |label: &str| -> Vec<&SystemRun> {
        runs.iter()
            .filter(|r| r.label == label && r.report.status == ReportStatus::Completed)
            .collect()
    };
    let times = |label: &str| {
        spread(
            &done(label)
                .iter()
                .map(|r| r.report.total_ms)
                .collect::<Vec<_>>(),
        )
    };
    let auto = done(System::AUTO.label);
    let of_auto = |pick: fn(&SystemRun) -> Option<u64>| {
        spread(&auto.iter().filter_map(|r| pick(r)).collect::<Vec<_>>())
    };
    let (base, multifd, best, mptcp, auto_t) = (
        times(System::BASELINE.label),
        times(System::MULTIFD_TCP.label),
        times(System::BEST_SINGLE_PATH.label),
        times(System::MPTCP.label),
        times(System::AUTO.label),
    );
    let downtime = of_auto(|r| r.report.downtime_ms);
    let qemu_downtime = of_auto(|r| r.report.qemu_downtime_ms);
    let fixed = of_auto(|r| r.report.fixed_ms);
    let stall = of_auto(|r| r.stall.map(|s| s.max_ms));
    let stall_p99 = of_auto(|r| r.stall.map(|s| s.p99_ms));
    let root_overlay = of_auto(|r| {
        r.report
            .disks
            .iter()
            .find(|d| d.role == "root")
            .map(|d| d.bytes)
    });
    let watched: Vec<u64> = runs
        .iter()
        .filter(|r| r.label == System::AUTO.label)
        .filter_map(|r| r.client_errors)
        .collect();
    let shares: Vec<f64> = done(System::MPTCP.label)
        .iter()
        .map(|r| {
            let bits = (r.report.memory_bytes + r.report.disk_bytes) as f64 * 8.0;
            bits / (r.report.total_ms.max(1) as f64 / 1000.0) / aggregate_bps.max(1) as f64
        })
        .collect();
    let mut completed = BTreeMap::new();
    for r in runs {
        let n = completed.entry(r.label.to_string()).or_insert(0u32);
        if r.report.status == ReportStatus::Completed {
            *n += 1;
        }
    }
    MigrateRun {
        scenario: scenario.name().into(),
        baseline_ms: base.median,
        baseline_ms_min: base.min,
        baseline_ms_max: base.max,
        multifd_tcp_ms: multifd.median,
        multifd_tcp_ms_min: multifd.min,
        multifd_tcp_ms_max: multifd.max,
        best_single_path_ms: best.median,
        best_single_path_ms_min: best.min,
        best_single_path_ms_max: best.max,
        mptcp_ms: mptcp.median,
        mptcp_ms_min: mptcp.min,
        mptcp_ms_max: mptcp.max,
        auto_ms: auto_t.median,
        auto_ms_min: auto_t.min,
        auto_ms_max: auto_t.max,
        speedup_mptcp: ratio(base.median, mptcp.median),
        speedup_auto: ratio(base.median, auto_t.median),
        speedup_mptcp_vs_multifd_tcp: ratio(multifd.median, mptcp.median),
        speedup_auto_vs_best_single_path: ratio(best.median, auto_t.median),
        downtime_ms: downtime.median,
        downtime_ms_min: downtime.min,
        downtime_ms_max: downtime.max,
        qemu_downtime_ms: qemu_downtime.median,
        qemu_downtime_ms_min: qemu_downtime.min,
        qemu_downtime_ms_max: qemu_downtime.max,
        fixed_ms: fixed.median,
        fixed_ms_min: fixed.min,
        fixed_ms_max: fixed.max,
        client_stall_ms: stall.median,
        client_stall_ms_min: stall.min,
        client_stall_ms_max: stall.max,
        client_stall_p99_ms: stall_p99.median,
        client_stall_p99_ms_min: stall_p99.min,
        client_stall_p99_ms_max: stall_p99.max,
        client_errors: (!watched.is_empty()).then(|| watched.iter().sum()),
        aggregate_share: if scenario == Scenario::UnevenPaths {
            crate::paper::summarize(&shares).median
        } else {
            None
        },
        root_overlay_bytes: root_overlay.median,
        root_overlay_bytes_min: root_overlay.min,
        root_overlay_bytes_max: root_overlay.max,
        completed,
        attempted: BTreeMap::new(),
        reports: runs.iter().map(|r| r.report.clone()).collect(),
        report_systems: runs.iter().map(|r| r.label.to_string()).collect(),
        report_stalls_ms: runs.iter().map(|r| r.stall.map(|s| s.max_ms)).collect(),
    }
}

#[cfg(test)]
mod tests {
    use edgemig_migration::{PhaseTimes, Transport};

    use super::*;
    use crate::session::Stall;

    fn run(label: &'static str, total_ms: u64, status: ReportStatus) -> SystemRun {
        SystemRun {
            label,
            report: MigrationReport {
                status,
                id: "0123456789abcdef".into(),
                total_ms,
                downtime_ms: Some(total_ms / 100),
                qemu_downtime_ms: Some(total_ms / 200),
                fixed_ms: Some(3000),
                phases: PhaseTimes::default(),
                blackout: Default::default(),
                disk_bytes: 0,
                disks: vec![],
                memory_bytes: 100 << 20,
                paths: vec![],
                transport: Transport::Mptcp,
                compression: "none".into(),
                error: None,
                insecure: false,
                vm: "bench".into(),
                from: "site-a".into(),
                to: "site-b".into(),
                started_at: 0,
                network: None,
            },
            stall: (label == "auto").then_some(Stall {
                max_ms: total_ms / 10,
                p99_ms: 20,
            }),
            client_errors: (label == "auto").then_some(0),
        }
    }

    #[test]
    fn medians_extremes_and_speedups() {
        let c = ReportStatus::Completed;
        let runs = vec![
            run("baseline", 60_000, c),
            run("multifd_tcp", 50_000, c),
            run("best_single_path", 40_000, c),
            run("mptcp", 30_000, c),
            run("auto", 20_000, c),
            run("auto", 22_000, c),
            run("auto", 30_000, ReportStatus::Failed),
            run("auto", 21_000, c),
            run("baseline", 62_000, c),
            run("baseline", 58_000, c),
        ];
        let line = summarize_runs(Scenario::Idle, &runs, 100_000_000);
        assert_eq!(
            (line.baseline_ms, line.baseline_ms_min, line.baseline_ms_max),
            (Some(60_000), Some(58_000), Some(62_000))
        );
        // The failed run is left out of the medians.
        assert_eq!(
            (line.auto_ms, line.auto_ms_min, line.auto_ms_max),
            (Some(21_000), Some(20_000), Some(22_000))
        );
        assert_eq!(line.completed["auto"], 3);
        assert_eq!(line.speedup_auto_vs_best_single_path, Some(40.0 / 21.0));
        assert_eq!(line.speedup_mptcp_vs_multifd_tcp, Some(50.0 / 30.0));
        assert_eq!(line.speedup_mptcp, Some(2.0));
        assert_eq!(line.downtime_ms, Some(210));
        assert_eq!(line.qemu_downtime_ms, Some(105));
        assert_eq!(line.fixed_ms, Some(3000));
        assert_eq!(
            (
                line.client_stall_ms,
                line.client_stall_ms_min,
                line.client_stall_ms_max
            ),
            (Some(2100), Some(2000), Some(2200))
        );
        assert_eq!(line.client_stall_p99_ms, Some(20));
        assert_eq!(line.client_errors, Some(0));
        assert_eq!(line.aggregate_share, None);
        assert_eq!(line.reports.len(), runs.len());
        assert_eq!(line.report_systems[2], "best_single_path");
        assert_eq!(line.report_stalls_ms.len(), runs.len());
        assert_eq!(
            line.report_stalls_ms[0], None,
            "baseline runs are not watched"
        );
        assert_eq!(line.report_stalls_ms[4], runs[4].stall.map(|s| s.max_ms));
        assert!(line.report_stalls_ms[4].is_some());
        // The shape: every median with its min and max beside it.
        let v = serde_json::to_value(&line).unwrap();
        for key in [
            "baseline_ms",
            "multifd_tcp_ms",
            "best_single_path_ms",
            "mptcp_ms",
            "auto_ms",
            "downtime_ms",
            "qemu_downtime_ms",
            "fixed_ms",
            "client_stall_ms",
            "client_stall_p99_ms",
        ] {
            for k in [key.to_string(), format!("{key}_min"), format!("{key}_max")] {
                assert!(v[&k].is_u64(), "{k} in {v}");
            }
        }
        // Uneven paths: the MPTCP runs' share of the aggregate.
        let uneven = summarize_runs(Scenario::UnevenPaths, &runs, 100_000_000);
        let share = uneven.aggregate_share.unwrap();
        assert!((share - (100.0 * 8.0 * 1_048_576.0 / 30.0 / 1e8)).abs() < 1e-9);
    }

    #[test]
    fn root_overlay_is_the_auto_runs_root_disk() {
        let c = ReportStatus::Completed;
        let with_root = |label, bytes| {
            let mut r = run(label, 20_000, c);
            r.report.disks = vec![
                edgemig_migration::DiskTransfer {
                    role: "root".into(),
                    sync: "top".into(),
                    bytes,
                },
                edgemig_migration::DiskTransfer {
                    role: "data".into(),
                    sync: "top".into(),
                    bytes: 1 << 30,
                },
            ];
            r
        };
        let runs = vec![
            with_root("auto", 30 << 20),
            with_root("mptcp", 99 << 20),
            with_root("auto", 10 << 20),
        ];
        let line = summarize_runs(Scenario::Idle, &runs, 100_000_000);
        assert_eq!(
            (
                line.root_overlay_bytes,
                line.root_overlay_bytes_min,
                line.root_overlay_bytes_max
            ),
            (Some(20 << 20), Some(10 << 20), Some(30 << 20))
        );
        // The built-in guest has no root disk.
        let line = summarize_runs(Scenario::Idle, &[run("auto", 1000, c)], 1);
        assert_eq!(line.root_overlay_bytes, None);
    }

    fn options(scenarios: Vec<Scenario>, root: bool) -> MigrateBenchOptions {
        MigrateBenchOptions {
            config: TestbedConfig::default_config(),
            scenarios,
            memory_mib: 1024,
            fill_mib: 300,
            disk: DiskSetup::default(),
            repeat: 1,
            limit: Duration::from_secs(600),
            agent: "edgemigd".into(),
            linkemu: "edgemig-linkemu".into(),
            image_dir: "guest-image".into(),
            tool: "edgemig-guest".into(),
            root_image: root.then(|| RootImage {
                name: "debian12".into(),
                path: "debian12.qcow2".into(),
            }),
        }
    }

    #[test]
    fn a_root_image_runs_idle_and_disk_only() {
        assert!(validate(&options(vec![Scenario::Idle, Scenario::Disk], true)).is_ok());
        let all = vec![
            Scenario::Idle,
            Scenario::Disk,
            Scenario::Dirty,
            Scenario::UnevenPaths,
        ];
        assert!(validate(&options(all.clone(), false)).is_ok());
        match validate(&options(all, true)) {
            Err(MigrateBenchError::Config(m)) => {
                assert!(
                    m.contains("debian12") && m.contains("dirty, uneven-paths"),
                    "{m}"
                );
            }
            other => panic!("{other:?}"),
        }
        let mut bad = options(vec![Scenario::Idle], false);
        bad.repeat = 0;
        assert!(matches!(validate(&bad), Err(MigrateBenchError::Config(_))));
    }

    #[test]
    fn spreads_of_nothing_and_of_an_even_count() {
        assert_eq!(spread(&[]), Spread::default());
        let s = spread(&[10, 40, 20, 30]);
        assert_eq!((s.median, s.min, s.max), (Some(25), Some(10), Some(40)));
    }
}
