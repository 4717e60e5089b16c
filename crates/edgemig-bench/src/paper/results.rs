//! What `results.json` holds (field names are a contract): the machine and
//! the conditions, then one figure per chart with every point's median,
//! extremes, count and the raw runs behind it.

use edgemig_migration::{MigrationReport, ReportStatus};
use serde::{Deserialize, Serialize};

use super::stats::{Summary, summarize};

/// The whole `results.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PaperResults {
    /// Always `"paper"`.
    pub bench: String,
    /// edgemig's version.
    pub edgemig_version: String,
    /// When the run started, UTC, RFC 3339.
    pub date: String,
    /// `git describe --always --dirty` of the working directory, if any.
    pub git: Option<String>,
    /// Where it ran.
    pub machine: Machine,
    /// Whether this was the `--quick` subset.
    pub quick: bool,
    /// Runs asked for per point.
    pub repeat: u32,
    /// Seconds after which a migration was cancelled (its point is null).
    pub limit_s: u64,
    /// What holds for every figure, in words.
    pub conditions: String,
    /// The figures, in the order they were measured.
    pub figures: Vec<Figure>,
    /// Measurements that failed (their points are null), with the error.
    #[serde(default)]
    pub failures: Vec<String>,
}

/// The machine the run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    /// CPU model name.
    pub cpu_model: Option<String>,
    /// CPUs available to the run.
    pub cpus: u32,
    /// Memory, MiB.
    pub memory_mib: Option<u64>,
    /// Kernel release.
    pub kernel: Option<String>,
    /// First line of `qemu-system-x86_64 --version`.
    pub qemu: Option<String>,
}

/// One chart's data.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Figure {
    /// Stem of its plot files and its key (`time_vs_bandwidth`, ...).
    pub id: String,
    /// Title.
    pub title: String,
    /// `line` (numeric x) or `bars` (categories).
    pub kind: String,
    /// X axis label with its unit (or the categories' meaning).
    pub x_label: String,
    /// Unit of every `median`, `min`, `max` and sample.
    pub unit: String,
    /// Unit the plot and the Markdown show (`s` for times kept in `ms`).
    pub display_unit: String,
    /// Conditions of this figure, in words.
    pub conditions: String,
    /// One series per system.
    pub series: Vec<FigureSeries>,
    /// Remarks (e.g. whether the client's session survived).
    pub notes: Vec<String>,
    /// Plot files written for it, relative to the output directory.
    pub plots: Vec<String>,
    /// Why its plots could not be rendered, if they could not.
    #[serde(default)]
    pub plot_error: Option<String>,
}

/// One system's points.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FigureSeries {
    /// `baseline`, `mptcp`, `auto`, ...
    pub system: String,
    /// Legend text.
    pub label: String,
    /// Points in x order.
    pub points: Vec<FigurePoint>,
}

/// An x value: a number (line charts) or a category (bar charts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum XValue {
    /// Numeric x, in the x axis' unit.
    Number(f64),
    /// A category name.
    Category(String),
}

impl std::fmt::Display for XValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Number(x) => write!(f, "{x}"),
            Self::Category(c) => f.write_str(c),
        }
    }
}

/// One point: the median of its runs, in the figure's `unit`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FigurePoint {
    /// Its x.
    pub x: XValue,
    /// Median of the samples; null when no run produced one.
    pub median: Option<f64>,
    /// Smallest sample.
    pub min: Option<f64>,
    /// Largest sample.
    pub max: Option<f64>,
    /// Runs that produced a sample.
    pub n: u32,
    /// Runs attempted.
    pub attempted: u32,
    /// The samples.
    pub samples: Vec<f64>,
    /// The migrations behind the samples (empty for client measurements).
    pub runs: Vec<RunRecord>,
}

impl FigurePoint {
    /// A point from raw samples (NaN for a run without a value).
    pub fn from_samples(x: XValue, samples: Vec<f64>, attempted: u32) -> Self {
        let Summary {
            median,
            min,
            max,
            n,
        } = summarize(&samples);
        Self {
            x,
            median,
            min,
            max,
            n,
            attempted,
            samples: samples.into_iter().filter(|s| s.is_finite()).collect(),
            runs: Vec::new(),
        }
    }

    /// A migration-time point (ms): completed runs give samples, others
    /// only their record.
    pub fn from_migrations(x: XValue, reports: &[MigrationReport]) -> Self {
        let samples = reports
            .iter()
            .map(|r| {
                if r.status == ReportStatus::Completed {
                    r.total_ms as f64
                } else {
                    f64::NAN
                }
            })
            .collect();
        let attempted = u32::try_from(reports.len()).unwrap_or(u32::MAX);
        Self {
            runs: reports.iter().map(RunRecord::from).collect(),
            ..Self::from_samples(x, samples, attempted)
        }
    }
}

/// The key fields of one migration's report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    /// `completed`, `failed` or `cancelled`.
    pub status: String,
    /// Whole migration, ms.
    pub total_ms: u64,
    /// Guest pause, ms.
    pub downtime_ms: Option<u64>,
    /// Memory bytes sent.
    pub memory_bytes: u64,
    /// Disk bytes mirrored.
    pub disk_bytes: u64,
    /// Compression used.
    pub compression: String,
    /// Failure reason.
    pub error: Option<String>,
}

impl From<&MigrationReport> for RunRecord {
    fn from(r: &MigrationReport) -> Self {
        Self {
            status: match r.status {
                ReportStatus::Completed => "completed",
                ReportStatus::Failed => "failed",
                ReportStatus::Cancelled => "cancelled",
            }
            .into(),
            total_ms: r.total_ms,
            downtime_ms: r.downtime_ms,
            memory_bytes: r.memory_bytes,
            disk_bytes: r.disk_bytes,
            compression: r.compression.clone(),
            error: r.error.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x_values_serialize_plainly() {
        assert_eq!(
            serde_json::to_string(&XValue::Number(25.0)).unwrap(),
            "25.0"
        );
        assert_eq!(
            serde_json::to_string(&XValue::Category("a".into())).unwrap(),
            "\"a\""
        );
    }

    #[test]
    fn missing_runs_count_as_attempted_only() {
        let p = FigurePoint::from_samples(XValue::Number(1.0), vec![10.0, f64::NAN, 30.0], 3);
        assert_eq!((p.n, p.attempted, p.median), (2, 3, Some(20.0)));
        assert_eq!(p.samples, vec![10.0, 30.0]);
        // NaN never reaches the JSON (it would be invalid there).
        assert!(serde_json::to_string(&p).is_ok());
    }
}
