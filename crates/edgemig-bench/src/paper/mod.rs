//! `edgemig bench paper`: the SEC 2017 paper's evaluation reproduced with
//! edgemig, its baselines measured in the same run — migration time against
//! the paths' bandwidth and against the VM's memory size (plain QEMU over one
//! TCP connection, QEMU's best single-path setup of multifd + zstd over one
//! TCP path, edgemig over MPTCP, edgemig with compression), the
//! client's throughput and RTT after a migration with and without the
//! handoff, and a data disk with and without its base image cached at the
//! destination. Writes `results.json`, `results.md` and PNG + SVG plots
//! into an output directory; `quick` runs one point per figure.

mod figures;
mod machine;
mod markdown;
mod output;
mod plan;
mod plots;
mod results;
mod stats;

use std::path::PathBuf;
use std::time::Duration;

use edgemig_testbed::TestbedConfig;

pub use figures::FigureError;
pub(crate) use figures::error_chain;
pub use output::OutputError;
pub use plan::Plan;
pub use results::{Figure, FigurePoint, FigureSeries, Machine, PaperResults, RunRecord, XValue};
pub use stats::{Summary, summarize};

use crate::runner::Binaries;
use figures::FigureContext;

/// Most runs per point accepted.
pub const MAX_REPEAT: u32 = 20;

/// Errors of the paper benchmark.
#[derive(Debug, thiserror::Error)]
pub enum PaperError {
    /// The options cannot work.
    #[error("{0}")]
    Invalid(String),
    /// The output directory.
    #[error(transparent)]
    Output(#[from] OutputError),
}

/// What to run.
#[derive(Debug, Clone)]
pub struct PaperOptions {
    /// Topology: two sites joined by paths (their rates are set per figure)
    /// and a client with a link to each site (the handoff figure).
    pub config: TestbedConfig,
    /// The quick subset ([`Plan::quick`]) instead of [`Plan::full`].
    pub quick: bool,
    /// Runs per point (1..=[`MAX_REPEAT`]); each point is their median.
    pub repeat: u32,
    /// Longest time one migration may take; it is then cancelled and its
    /// run counts as missing.
    pub limit: Duration,
    /// Output directory (created; must be empty unless `force`).
    pub out_dir: PathBuf,
    /// Write into a non-empty output directory.
    pub force: bool,
    /// `edgemigd` binary.
    pub agent: PathBuf,
    /// `edgemig-linkemu` binary.
    pub linkemu: PathBuf,
    /// Guest image.
    pub image_dir: PathBuf,
    /// The traffic tool (`edgemig-guest`).
    pub tool: PathBuf,
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct PaperOutput {
    /// `results.json`'s content.
    pub results: PaperResults,
    /// `results.md`'s content.
    pub markdown: String,
    /// Where everything was written.
    pub out_dir: PathBuf,
}

/// `bench-results/paper-<UTC timestamp>` under the current directory.
pub fn default_out_dir() -> PathBuf {
    PathBuf::from("bench-results").join(format!("paper-{}", machine::stamp(machine::now_unix())))
}

fn check(opts: &PaperOptions) -> Result<(), PaperError> {
    if !(1..=MAX_REPEAT).contains(&opts.repeat) {
        return Err(PaperError::Invalid(format!(
            "--repeat must be between 1 and {MAX_REPEAT}"
        )));
    }
    if opts.limit.is_zero() {
        return Err(PaperError::Invalid("--limit-s must be positive".into()));
    }
    let c = &opts.config;
    if c.sites.len() < 2 || c.paths.is_empty() || c.clients.is_empty() {
        return Err(PaperError::Invalid(
            "The testbed config needs two sites joined by paths and a client".into(),
        ));
    }
    Ok(())
}

/// Runs the benchmark: every figure in turn, each on testbeds of its own
/// that are removed however the run ends (dropping the future included),
/// writing the output after each figure. A failed measurement (a testbed
/// that would not come up, an agent error, a migration that never ended)
/// leaves its points null and is listed in [`PaperResults::failures`]; the
/// run goes on.
pub async fn run_paper(opts: &PaperOptions) -> Result<PaperOutput, PaperError> {
    check(opts)?;
    output::prepare(&opts.out_dir, opts.force)?;
    let plan = if opts.quick {
        Plan::quick()
    } else {
        Plan::full()
    };
    let ctx = FigureContext {
        config: opts.config.clone(),
        plan,
        repeat: opts.repeat,
        limit: opts.limit,
        binaries: Binaries {
            agent: opts.agent.clone(),
            linkemu: opts.linkemu.clone(),
            image_dir: opts.image_dir.clone(),
        },
        tool: opts.tool.clone(),
    };
    let mut results = PaperResults {
        bench: "paper".into(),
        edgemig_version: env!("CARGO_PKG_VERSION").into(),
        date: machine::rfc3339(machine::now_unix()),
        git: machine::git_describe(),
        machine: machine::machine(),
        quick: opts.quick,
        repeat: opts.repeat,
        limit_s: opts.limit.as_secs(),
        conditions: format!(
            "Testbed: two sites in network namespaces joined by {} emulated paths (user-space link emulator; rates set per figure) and a client `{}`; guests with 1 vCPU under QEMU TCG (no KVM); TLS on the migration data path for every system. Systems: *baseline* = plain QEMU over one TCP connection (no multifd, no compression); *best_single_path* = QEMU's best setup over one TCP path: multifd with 4 channels + zstd (level from edgemig's model for that path's rate), as `virsh migrate --parallel --compressed` gives; *mptcp* = edgemig over MPTCP on all paths, no compression; *auto* = edgemig over MPTCP with `--compression auto`.",
            opts.config.paths.len(),
            opts.config
                .clients
                .first()
                .map(|c| c.name.as_str())
                .unwrap_or_default()
        ),
        figures: Vec::new(),
        failures: Vec::new(),
    };
    output::write_all(&opts.out_dir, &mut results)?;
    let mut failures = Vec::new();
    results.figures.push(ctx.bandwidth(&mut failures).await);
    results.failures.clone_from(&failures);
    output::write_all(&opts.out_dir, &mut results)?;
    results.figures.push(ctx.memory(&mut failures).await);
    results.failures.clone_from(&failures);
    output::write_all(&opts.out_dir, &mut results)?;
    results.figures.extend(ctx.handoff(&mut failures).await);
    results.failures.clone_from(&failures);
    output::write_all(&opts.out_dir, &mut results)?;
    results.figures.extend(ctx.disk(&mut failures).await);
    results.failures = failures;
    let markdown = output::write_all(&opts.out_dir, &mut results)?;
    Ok(PaperOutput {
        results,
        markdown,
        out_dir: opts.out_dir.clone(),
    })
}
