//! Measuring each figure of the paper: migration time against the paths'
//! bandwidth and against the guest's memory size (plain QEMU, edgemig over
//! MPTCP, edgemig with compression, same run), the client's view after a
//! migration with and without the handoff, and a data disk with and without
//! its base image cached at the destination.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use edgemig_migration::{MigrationReport, ReportStatus};
use edgemig_testbed::TestbedConfig;

use super::plan::Plan;
use super::results::{Figure, FigurePoint, FigureSeries, XValue};
use super::stats::summarize;
use crate::handoff::{HandoffBenchError, HandoffOptions, HandoffReport, run_handoff_bench};
use crate::migrate::MigrateBenchError;
use crate::runner::{Binaries, System, Workload, counterbalanced, run_systems};

/// Bytes in a MiB.
const MIB: f64 = 1_048_576.0;

/// Errors while measuring a figure.
#[derive(Debug, thiserror::Error)]
pub enum FigureError {
    /// A migration benchmark step failed (testbed, agent, timeout).
    #[error("Migration measurement failed for {figure}")]
    Migrate {
        /// The figure.
        figure: String,
        /// Why.
        #[source]
        source: MigrateBenchError,
    },
    /// The handoff benchmark failed.
    #[error("Handoff measurement failed")]
    Handoff(#[source] HandoffBenchError),
}

/// Everything a figure needs to run.
#[derive(Debug, Clone)]
pub struct FigureContext {
    /// The testbed topology (its paths' rates are overridden per figure).
    pub config: TestbedConfig,
    /// Sizes.
    pub plan: Plan,
    /// Runs per point.
    pub repeat: u32,
    /// Longest migration before it is cancelled.
    pub limit: Duration,
    /// `edgemigd`, `edgemig-linkemu` and the guest image.
    pub(crate) binaries: Binaries,
    /// The traffic tool (`edgemig-guest`).
    pub tool: std::path::PathBuf,
}

/// The systems of the migration figures, with their legend text.
pub(crate) const SYSTEMS: [(System, &str); 4] = [
    (System::BASELINE, "plain QEMU (1 TCP connection)"),
    (
        System::BEST_SINGLE_PATH,
        "QEMU multifd 4 + zstd (1 TCP path)",
    ),
    (System::MPTCP, "edgemig (MPTCP, no compression)"),
    (System::AUTO, "edgemig (MPTCP + compression auto)"),
];

/// A testbed name unique within this process: `bp<pid><n>`.
pub fn testbed_name() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "bp{}x{}",
        std::process::id() % 100_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn with_rate(config: &TestbedConfig, mbit: u64) -> TestbedConfig {
    let mut c = config.clone();
    for p in &mut c.paths {
        p.shape.rate = format!("{mbit}mbit");
    }
    c
}

fn delays(config: &TestbedConfig) -> String {
    let mut d: Vec<&str> = config
        .paths
        .iter()
        .map(|p| p.shape.delay.as_str())
        .collect();
    d.dedup();
    d.join("/")
}

fn series(points: Vec<Vec<FigurePoint>>) -> Vec<FigureSeries> {
    SYSTEMS
        .iter()
        .zip(points)
        .map(|((s, label), points)| FigureSeries {
            system: s.label.into(),
            label: (*label).into(),
            points,
        })
        .collect()
}

/// `error` and its causes on one line.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut s = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

impl FigureContext {
    /// A migration-time point; runs that never happened (their testbed
    /// failed) count as attempted.
    fn migration_point(&self, x: XValue, reports: &[MigrationReport]) -> FigurePoint {
        let mut point = FigurePoint::from_migrations(x, reports);
        point.attempted = point.attempted.max(self.repeat);
        point
    }

    /// Migrates one guest with every system, `repeat` times (interleaved,
    /// the order reversed every other repetition), on a testbed of its own; the
    /// reports per system, in [`SYSTEMS`] order.
    ///
    /// A failure (testbed, agent, a migration that never ended) is added to
    /// `failures` (as `what: error`) and leaves every system without reports.
    async fn three_systems(
        &self,
        figure: &str,
        what: &str,
        config: &TestbedConfig,
        workload: &Workload,
        failures: &mut Vec<String>,
    ) -> Vec<Vec<MigrationReport>> {
        let all: Vec<System> = SYSTEMS.iter().map(|(s, _)| *s).collect();
        let systems = counterbalanced(&all, self.repeat);
        let reports = run_systems(
            &testbed_name(),
            config,
            &self.binaries,
            workload,
            &systems,
            self.limit,
            None,
        )
        .await
        .map_err(|source| FigureError::Migrate {
            figure: figure.into(),
            source,
        });
        let reports = match reports {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{what}: {}", error_chain(&e)));
                Vec::new()
            }
        };
        SYSTEMS
            .iter()
            .map(|(s, _)| {
                reports
                    .iter()
                    .filter(|r| r.label == s.label)
                    .map(|r| r.report.clone())
                    .collect()
            })
            .collect()
    }

    /// Migration time against the rate of every path.
    pub async fn bandwidth(&self, failures: &mut Vec<String>) -> Figure {
        let id = "time_vs_bandwidth";
        let p = &self.plan;
        let mut points = vec![Vec::new(); SYSTEMS.len()];
        for &mbit in &p.bandwidth_mbit {
            let workload = Workload {
                memory_mib: p.bandwidth_memory_mib,
                fill_mib: p.bandwidth_fill_mib,
                mem_write: None,
                disk: None,
            };
            let per_system = self
                .three_systems(
                    id,
                    &format!("{id} at {mbit} Mbit/s"),
                    &with_rate(&self.config, mbit),
                    &workload,
                    failures,
                )
                .await;
            for (i, reports) in per_system.iter().enumerate() {
                points[i].push(self.migration_point(XValue::Number(mbit as f64), reports));
            }
        }
        Figure {
            id: id.into(),
            title: "Migration time vs bandwidth per path".into(),
            kind: "line".into(),
            x_label: "Bandwidth per path (Mbit/s)".into(),
            unit: "ms".into(),
            display_unit: "s".into(),
            conditions: format!(
                "{} paths between the two sites, each set to the x rate ({} one-way delay); {} MiB guest holding {} MiB of mixed data (half random, half text), otherwise idle; the systems migrate the same VM in turn, back and forth, {} time(s) each (the order reversed every other repetition); TLS on for all; time = the whole `edgemig migrate` (prepare, copy, switchover, resume, handoff)",
                self.config.paths.len(),
                delays(&self.config),
                p.bandwidth_memory_mib,
                p.bandwidth_fill_mib,
                self.repeat
            ),
            series: series(points),
            notes: Vec::new(),
            plots: Vec::new(),
            plot_error: None,
        }
    }

    /// Migration time against the guest's memory size, with a memory writer.
    pub async fn memory(&self, failures: &mut Vec<String>) -> Figure {
        let id = "time_vs_memory";
        let p = &self.plan;
        let config = with_rate(&self.config, p.memory_rate_mbit);
        let mut points = vec![Vec::new(); SYSTEMS.len()];
        for &mib in &p.memory_mib {
            let workload = Workload {
                memory_mib: mib,
                fill_mib: p.fill_of(mib),
                mem_write: Some((p.writer_of(mib), Some(p.writer_rate_mib_s))),
                disk: None,
            };
            let per_system = self
                .three_systems(
                    id,
                    &format!("{id} at {mib} MiB"),
                    &config,
                    &workload,
                    failures,
                )
                .await;
            for (i, reports) in per_system.iter().enumerate() {
                points[i].push(self.migration_point(XValue::Number(mib as f64), reports));
            }
        }
        Figure {
            id: id.into(),
            title: "Migration time vs VM memory size".into(),
            kind: "line".into(),
            x_label: "VM memory (MiB)".into(),
            unit: "ms".into(),
            display_unit: "s".into(),
            conditions: format!(
                "{} paths at {} Mbit/s ({} one-way delay); a guest of M MiB holding M/{} MiB of mixed data and running a memory writer over a working set of M/{} MiB dirtying {} MiB/s throughout; the systems migrate the same VM in turn, back and forth, {} time(s) each (the order reversed every other repetition); no postcopy",
                self.config.paths.len(),
                p.memory_rate_mbit,
                delays(&self.config),
                p.fill_divisor,
                p.writer_divisor,
                p.writer_rate_mib_s,
                self.repeat
            ),
            series: series(points),
            notes: Vec::new(),
            plots: Vec::new(),
            plot_error: None,
        }
    }

    /// The client's throughput and RTT after a migration with and without
    /// the handoff: two figures (`handoff` in Mbit/s, `handoff_rtt` in ms).
    pub async fn handoff(&self, failures: &mut Vec<String>) -> [Figure; 2] {
        let opts = HandoffOptions {
            config: self.config.clone(),
            seconds: self.plan.handoff_seconds,
            agent: self.binaries.agent.clone(),
            linkemu: self.binaries.linkemu.clone(),
            image_dir: self.binaries.image_dir.clone(),
            tool: self.tool.clone(),
        };
        // Its migrations have no limit of their own: a run taking longer
        // than two migrations' limit is dropped (its testbed removed) and
        // counts as missing.
        let budget = self.limit * 2 + Duration::from_secs(120);
        let mut reports = Vec::new();
        let mut timed_out = 0u32;
        for _ in 0..self.repeat {
            match tokio::time::timeout(budget, run_handoff_bench(&opts)).await {
                Ok(Ok(report)) => reports.push(report),
                Ok(Err(e)) => failures.push(format!(
                    "handoff: {}",
                    error_chain(&FigureError::Handoff(e))
                )),
                Err(_) => timed_out += 1,
            }
        }
        let client = self
            .config
            .clients
            .first()
            .map_or_else(|| "client".to_string(), |c| c.name.clone());
        type Pick = fn(&HandoffReport) -> f64;
        let categories: [(&str, Pick, Pick); 5] = [
            ("before (far site)", |r| r.mbit_before, |r| r.rtt_before_ms),
            ("after, handoff", |r| r.mbit_after, |r| r.rtt_after_ms),
            (
                "after, no handoff",
                |r| r.mbit_no_handoff,
                |r| r.rtt_no_handoff_ms,
            ),
            ("direct (near site)", |r| r.mbit_direct, |r| r.rtt_direct_ms),
            (
                "VM at near site (reference)",
                |r| r.mbit_reference_vm,
                |r| r.rtt_reference_vm_ms,
            ),
        ];
        let attempted = self.repeat;
        let point = |name: &str, pick: Pick| {
            FigurePoint::from_samples(
                XValue::Category(name.into()),
                reports.iter().map(pick).collect(),
                attempted,
            )
        };
        let survived = !reports.is_empty() && reports.iter().all(|r| r.survived);
        let errors: u64 = reports.iter().map(|r| r.errors).sum();
        let stall = reports.iter().map(|r| r.max_stall_ms).max().unwrap_or(0);
        let p99 = reports.iter().map(|r| r.stall_p99_ms).max().unwrap_or(0);
        let mut notes = vec![format!(
            "{client}'s session survived every migration: {survived} ({errors} connection errors, longest stall {stall} ms, 99th percentile of the gaps between answers {p99} ms; 10 ms echo probes)"
        )];
        if timed_out > 0 {
            notes.push(format!(
                "{timed_out} run(s) did not finish within {} s and count as missing",
                budget.as_secs()
            ));
        }
        let conditions = format!(
            "{client}'s links as configured ({}); a 128 MiB VM at the first site serves {client} and moves to the second site with the handoff and, on another testbed, without it (address kept behind the tunnel); throughput = {} s MPTCP bulk download, RTT = median of 10 ms MPTCP echo probes, both 10 s after the migration; categories: VM at the first (far) site before the migration; at the second site with the handoff; at the second site without it (tunnel); direct = {client} to the second (near) site's host; reference = a VM of the same kind (128 MiB, TCG) running at the second site from the start, measured after the migration like the migrated one; {} run(s) of each",
            self.config
                .clients
                .first()
                .map(|c| c
                    .links
                    .iter()
                    .map(|l| format!("{}: {} {}", l.site, l.shape.rate, l.shape.delay))
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default(),
            self.plan.handoff_seconds,
            self.repeat
        );
        let figure =
            |id: &str, title: &str, unit: &str, pick: fn(&(&str, Pick, Pick)) -> Pick| Figure {
                id: id.into(),
                title: title.into(),
                kind: "bars".into(),
                x_label: "Client measurement".into(),
                unit: unit.into(),
                display_unit: unit.into(),
                conditions: conditions.clone(),
                series: vec![FigureSeries {
                    system: "client".into(),
                    label: format!("{client} (client)"),
                    points: categories.iter().map(|c| point(c.0, pick(c))).collect(),
                }],
                notes: notes.clone(),
                plots: Vec::new(),
                plot_error: None,
            };
        [
            figure(
                "handoff",
                "Client throughput after migration, with and without handoff",
                "Mbit/s",
                |c| c.1,
            ),
            figure(
                "handoff_rtt",
                "Client RTT after migration, with and without handoff",
                "ms",
                |c| c.2,
            ),
        ]
    }

    /// A data disk over a base image cached at the destination vs not:
    /// two figures (`disk`: time; `disk_bytes`: bytes sent).
    pub async fn disk(&self, failures: &mut Vec<String>) -> [Figure; 2] {
        let p = &self.plan;
        let config = with_rate(&self.config, p.memory_rate_mbit);
        let setups = [
            ("base cached at destination", true),
            ("no base at destination", false),
        ];
        let mut runs: Vec<Vec<MigrationReport>> = Vec::new();
        for (name, at_destination) in setups {
            let workload = Workload {
                memory_mib: p.disk_memory_mib,
                fill_mib: p.disk_fill_mib,
                mem_write: None,
                disk: Some(crate::migrate::DiskSetup {
                    base_at_destination: at_destination,
                    ..p.disk
                }),
            };
            // A fresh testbed per run: a migration back would find the
            // base at its destination (the first site) in both setups.
            let mut reports = Vec::new();
            for _ in 0..self.repeat {
                let one = run_systems(
                    &testbed_name(),
                    &config,
                    &self.binaries,
                    &workload,
                    &[System::AUTO],
                    self.limit,
                    None,
                )
                .await
                .map_err(|source| FigureError::Migrate {
                    figure: "disk".into(),
                    source,
                });
                match one {
                    Ok(one) => reports.extend(one.into_iter().map(|r| r.report)),
                    Err(e) => failures.push(format!("disk ({name}): {}", error_chain(&e))),
                }
            }
            runs.push(reports);
        }
        let time_points = setups
            .iter()
            .zip(&runs)
            .map(|((name, _), r)| self.migration_point(XValue::Category((*name).into()), r))
            .collect();
        let bytes_point = |name: &str, r: &[MigrationReport], pick: fn(&MigrationReport) -> u64| {
            let samples = r
                .iter()
                .map(|r| {
                    if r.status == ReportStatus::Completed {
                        pick(r) as f64 / MIB
                    } else {
                        f64::NAN
                    }
                })
                .collect();
            FigurePoint::from_samples(XValue::Category(name.into()), samples, self.repeat)
        };
        let bytes_series =
            |system: &str, label: &str, pick: fn(&MigrationReport) -> u64| FigureSeries {
                system: system.into(),
                label: label.into(),
                points: setups
                    .iter()
                    .zip(&runs)
                    .map(|((name, _), r)| bytes_point(name, r, pick))
                    .collect(),
            };
        let medians: Vec<Option<f64>> = runs
            .iter()
            .map(|r| {
                let ms: Vec<f64> = r
                    .iter()
                    .filter(|r| r.status == ReportStatus::Completed)
                    .map(|r| r.total_ms as f64)
                    .collect();
                summarize(&ms).median
            })
            .collect();
        let notes = match (medians[0], medians[1]) {
            (Some(with), Some(without)) if with > 0.0 => vec![format!(
                "without the base at the destination the migration took {:.2}x as long",
                without / with
            )],
            _ => Vec::new(),
        };
        let conditions = format!(
            "{} paths at {} Mbit/s ({} one-way delay); {} MiB guest holding {} MiB of mixed data; a {} MiB data disk, an overlay on a base image holding {} MiB, with {} MiB written by the guest; edgemig over MPTCP with compression auto; each run on a fresh testbed, {} run(s) per bar; with the base cached only the overlay travels, without it the whole disk does",
            self.config.paths.len(),
            p.memory_rate_mbit,
            delays(&self.config),
            p.disk_memory_mib,
            p.disk_fill_mib,
            p.disk.disk_mib,
            p.disk.base_mib,
            p.disk.written_mib,
            self.repeat
        );
        [
            Figure {
                id: "disk".into(),
                title: "Disk migration time, base image cached at the destination or not".into(),
                kind: "bars".into(),
                x_label: "Base image".into(),
                unit: "ms".into(),
                display_unit: "s".into(),
                conditions: conditions.clone(),
                series: vec![FigureSeries {
                    system: "auto".into(),
                    label: "edgemig (MPTCP + compression auto)".into(),
                    points: time_points,
                }],
                notes: notes.clone(),
                plots: Vec::new(),
                plot_error: None,
            },
            Figure {
                id: "disk_bytes".into(),
                title: "Data sent in the disk migration".into(),
                kind: "bars".into(),
                x_label: "Base image".into(),
                unit: "MiB".into(),
                display_unit: "MiB".into(),
                conditions,
                series: vec![
                    bytes_series("disk", "disk data mirrored", |r| r.disk_bytes),
                    bytes_series("memory", "memory sent", |r| r.memory_bytes),
                ],
                notes,
                plots: Vec::new(),
                plot_error: None,
            },
        ]
    }
}
