//! `edgemig bench migrate`: migration time of edgemig (MPTCP over all
//! paths, with and without `--compression auto`) against the plain-QEMU
//! baseline (one TCP connection, no multifd, no compression), all in the
//! same run on the same testbed and the same guest.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use edgemig_api::{ApiClient, ImageImport, MigrateRequest, VmCreate};
use edgemig_guest_proto::GuestRequest;
use edgemig_migration::{
    Compression, MigrateOptions, MigrationReport, PostcopyPolicy, ReportStatus, Transport,
};
use edgemig_testbed::units::parse_rate;
use edgemig_testbed::{TestbedConfig, UpOptions};
use serde::Serialize;

use crate::base_image::{BaseImageSpec, write_base_image};
use crate::links::Cleanup;

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

/// What to run.
#[derive(Debug, Clone)]
pub struct MigrateBenchOptions {
    /// The topology; its first two sites and their paths are used.
    pub config: TestbedConfig,
    /// Scenarios to run.
    pub scenarios: Vec<Scenario>,
    /// Guest RAM in MiB.
    pub memory_mib: u64,
    /// Data held in guest memory, MiB.
    pub fill_mib: u32,
    /// The data disk of the disk scenario.
    pub disk: DiskSetup,
    /// Longest time one migration may take before it is cancelled.
    pub limit: Duration,
    /// `edgemigd` binary.
    pub agent: PathBuf,
    /// `edgemig-linkemu` binary.
    pub linkemu: PathBuf,
    /// Guest image.
    pub image_dir: PathBuf,
}

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
/// does not apply).
#[derive(Debug, Clone, Serialize)]
pub struct MigrateRun {
    /// Scenario name.
    pub scenario: String,
    /// Plain QEMU: one TCP connection, no multifd, no compression.
    pub baseline_ms: Option<u64>,
    /// edgemig over MPTCP, no compression.
    pub mptcp_ms: Option<u64>,
    /// edgemig over MPTCP, `--compression auto`.
    pub auto_ms: Option<u64>,
    /// `baseline_ms / mptcp_ms`.
    pub speedup_mptcp: Option<f64>,
    /// `baseline_ms / auto_ms`.
    pub speedup_auto: Option<f64>,
    /// Downtime of the `auto` run.
    pub downtime_ms: Option<u64>,
    /// Share of the paths' aggregate rate the MPTCP run achieved.
    pub aggregate_share: Option<f64>,
    /// Full reports of each run, for the details.
    pub reports: Vec<MigrationReport>,
}

/// The whole benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct MigrateBenchReport {
    /// One line per scenario.
    pub runs: Vec<MigrateRun>,
    /// Conditions, in words.
    pub conditions: String,
}

fn ms(r: &MigrationReport) -> Option<u64> {
    (r.status == ReportStatus::Completed).then_some(r.total_ms)
}

fn ratio(a: Option<u64>, b: Option<u64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0 => Some(a as f64 / b as f64),
        _ => None,
    }
}

/// Runs the benchmark.
pub async fn run_migrate_bench(
    opts: &MigrateBenchOptions,
) -> Result<MigrateBenchReport, MigrateBenchError> {
    if opts.config.sites.len() < 2 || opts.config.paths.is_empty() {
        return Err(MigrateBenchError::Config(
            "The config needs two sites joined by paths".into(),
        ));
    }
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
        conditions: format!(
            "testbed paths as configured ({}), {} MiB guest holding {} MiB of mixed data (half random, half text), TCG guests, TLS on the data path for every system, one run per system",
            opts.config
                .paths
                .iter()
                .map(|p| format!("{} {}", p.shape.rate, p.shape.delay))
                .collect::<Vec<_>>()
                .join(" + "),
            opts.memory_mib,
            opts.fill_mib
        ),
    })
}

struct Bed {
    sites: [ApiClient; 2],
    names: [String; 2],
}

/// The binaries and guest image a benchmark testbed needs.
#[derive(Debug, Clone)]
pub(crate) struct Binaries {
    /// `edgemigd` binary.
    pub agent: PathBuf,
    /// `edgemig-linkemu` binary.
    pub linkemu: PathBuf,
    /// Guest image.
    pub image_dir: PathBuf,
}

/// What the migrated guest holds and does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Workload {
    /// Guest RAM in MiB.
    pub memory_mib: u64,
    /// Mixed data held in guest memory, MiB (0 for none).
    pub fill_mib: u32,
    /// Memory writer: working set (MiB) and dirty rate (MiB/s, `None` for
    /// as fast as it can); started after the fill.
    pub mem_write: Option<(u32, Option<u32>)>,
    /// A data disk.
    pub disk: Option<DiskSetup>,
}

/// One system under test: how a migration is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct System {
    /// Its name in reports (`baseline`, `mptcp`, `auto`).
    pub label: &'static str,
    /// Transport.
    pub transport: Transport,
    /// Compression request.
    pub compression: Compression,
    /// Postcopy policy.
    pub postcopy: PostcopyPolicy,
}

impl System {
    /// Plain QEMU: one TCP connection, no multifd, no compression.
    pub const BASELINE: Self = Self {
        label: "baseline",
        transport: Transport::Tcp,
        compression: Compression::None,
        postcopy: PostcopyPolicy::Never,
    };
    /// edgemig over MPTCP without compression.
    pub const MPTCP: Self = Self {
        label: "mptcp",
        transport: Transport::Mptcp,
        compression: Compression::None,
        postcopy: PostcopyPolicy::Never,
    };
    /// edgemig over MPTCP with `--compression auto`.
    pub const AUTO: Self = Self {
        label: "auto",
        transport: Transport::Mptcp,
        compression: Compression::Auto,
        postcopy: PostcopyPolicy::Never,
    };
}

/// Brings up testbed `name` on `config`, starts a guest with `workload` at
/// the first site, and migrates it once per entry of `systems`, in order,
/// back and forth between the first two sites (a migration that does not
/// complete leaves the VM where it was). Every migration is cancelled after
/// `limit`. The testbed is removed however this ends (dropping the future
/// included).
pub(crate) async fn run_systems(
    name: &str,
    config: &TestbedConfig,
    binaries: &Binaries,
    workload: &Workload,
    systems: &[System],
    limit: Duration,
) -> Result<Vec<(&'static str, MigrationReport)>, MigrateBenchError> {
    if config.sites.len() < 2 || config.paths.is_empty() {
        return Err(MigrateBenchError::Config(
            "The config needs two sites joined by paths".into(),
        ));
    }
    let state = edgemig_testbed::up(&UpOptions {
        name: name.to_string(),
        config: config.clone(),
        agent: binaries.agent.clone(),
        linkemu: binaries.linkemu.clone(),
        image_dir: binaries.image_dir.clone(),
    })
    .await?;
    let _cleanup = Cleanup {
        testbed: name.to_string(),
        pids: Vec::new(),
    };
    let bed = Bed {
        sites: [
            ApiClient::new(&state.sites[0].api_socket).with_timeout(Duration::from_secs(900)),
            ApiClient::new(&state.sites[1].api_socket).with_timeout(Duration::from_secs(900)),
        ],
        names: [state.sites[0].name.clone(), state.sites[1].name.clone()],
    };
    let vm = "bench";
    let disk = workload.disk;
    let base_image = match disk {
        Some(d) if d.base_mib > 0 => Some(import_base(&bed, &d).await?),
        _ => None,
    };
    bed.sites[0]
        .create_vm(&VmCreate {
            name: vm.into(),
            memory_mib: workload.memory_mib,
            vcpus: 1,
            disk_mib: disk.map(|d| d.disk_mib),
            base_image,
            image: None,
            firmware: None,
            mptcp_apps: Default::default(),
        })
        .await?;
    bed.sites[0].start_vm(vm).await?;
    bed.sites[0].guest(vm, &GuestRequest::Hello).await?;
    if workload.fill_mib > 0 {
        bed.sites[0]
            .guest(
                vm,
                &GuestRequest::MemFill {
                    mib: workload.fill_mib,
                },
            )
            .await?;
    }
    if let Some((mib, rate_mib_s)) = workload.mem_write {
        bed.sites[0]
            .guest(vm, &GuestRequest::MemWrite { mib, rate_mib_s })
            .await?;
    }
    if let Some(d) = disk {
        bed.sites[0]
            .guest(
                vm,
                &GuestRequest::DiskWrite {
                    device: None,
                    mib: d.written_mib,
                    offset_mib: 0,
                    seed: 1,
                },
            )
            .await?;
    }
    let mut at = 0usize;
    let mut reports = Vec::new();
    for system in systems {
        let from = at;
        let to = 1 - at;
        let report = migrate_once(
            &bed,
            from,
            to,
            vm,
            (system.transport, system.compression, system.postcopy),
            limit,
        )
        .await?;
        tracing::info!(testbed = name, system = system.label, status = ?report.status, total_ms = report.total_ms, "benchmark run");
        if report.status == ReportStatus::Completed {
            at = to;
        }
        reports.push((system.label, report));
    }
    Ok(reports)
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
    // A guest dirtying memory flat out converges only with postcopy as the
    // last resort (auto-converge throttling is not enough under TCG).
    let systems = if scenario == Scenario::Dirty {
        vec![System {
            postcopy: PostcopyPolicy::Fallback,
            ..System::AUTO
        }]
    } else {
        vec![System::BASELINE, System::MPTCP, System::AUTO]
    };
    let binaries = Binaries {
        agent: opts.agent.clone(),
        linkemu: opts.linkemu.clone(),
        image_dir: opts.image_dir.clone(),
    };
    let labelled = run_systems(&name, config, &binaries, &workload, &systems, opts.limit).await?;
    let mut reports = Vec::new();
    let mut by_system = std::collections::HashMap::new();
    for (label, report) in labelled {
        by_system.insert(label, report.clone());
        reports.push(report);
    }
    let get = |l: &str| by_system.get(l).and_then(ms);
    let aggregate_bps: u64 = config
        .paths
        .iter()
        .map(|p| parse_rate(&p.shape.rate).unwrap_or(0))
        .sum();
    let share = by_system
        .get("mptcp")
        .filter(|r| r.status == ReportStatus::Completed)
        .map(|r| {
            let bits = (r.memory_bytes + r.disk_bytes) as f64 * 8.0;
            bits / (r.total_ms.max(1) as f64 / 1000.0) / aggregate_bps.max(1) as f64
        });
    Ok(MigrateRun {
        scenario: scenario.name().into(),
        baseline_ms: get("baseline"),
        mptcp_ms: get("mptcp"),
        auto_ms: get("auto"),
        speedup_mptcp: ratio(get("baseline"), get("mptcp")),
        speedup_auto: ratio(get("baseline"), get("auto")),
        downtime_ms: by_system.get("auto").and_then(|r| r.downtime_ms),
        aggregate_share: if scenario == Scenario::UnevenPaths {
            share
        } else {
            None
        },
        reports,
    })
}

/// Writes the disk scenario's base image and imports it at the first site
/// (and the second when the destination holds it too); returns its digest.
async fn import_base(bed: &Bed, disk: &DiskSetup) -> Result<String, MigrateBenchError> {
    let path = std::env::temp_dir().join(format!("edgemig-bench-{}-base.raw", std::process::id()));
    let spec = BaseImageSpec {
        virtual_mib: u32::try_from(disk.disk_mib).unwrap_or(u32::MAX),
        offset_mib: disk.written_mib,
        data_mib: disk.base_mib,
        seed: 2,
    };
    let written = write_base_image(&path, &spec);
    let result = async {
        written
            .map_err(|e| MigrateBenchError::Config(format!("Cannot write the base image: {e}")))?;
        let import = ImageImport {
            path: path.display().to_string(),
            name: Some("bench-base".into()),
            firmware: None,
        };
        let image = bed.sites[0].import_image(&import).await?;
        if disk.base_at_destination {
            bed.sites[1].import_image(&import).await?;
        }
        Ok(image.digest)
    }
    .await;
    let _ = std::fs::remove_file(&path);
    result
}

async fn migrate_once(
    bed: &Bed,
    from: usize,
    to: usize,
    vm: &str,
    (transport, compression, postcopy): (Transport, Compression, PostcopyPolicy),
    limit: Duration,
) -> Result<MigrationReport, MigrateBenchError> {
    let client = &bed.sites[from];
    let request = MigrateRequest {
        to: bed.names[to].clone(),
        options: MigrateOptions {
            transport,
            compression,
            postcopy,
            ..MigrateOptions::default()
        },
    };
    client.migrate(vm, &request).await?;
    let start = Instant::now();
    let mut cancelled = false;
    loop {
        let view = client.migration(vm).await?;
        if let Some(report) = view.report.filter(|_| !view.running) {
            return Ok(report);
        }
        if start.elapsed() > limit && !cancelled {
            client.cancel_migration(vm).await?;
            cancelled = true;
        }
        if start.elapsed() > limit + Duration::from_secs(120) {
            return Err(MigrateBenchError::Timeout(limit));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
