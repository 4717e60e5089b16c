//! `edgemig bench links`: does the testbed's link emulator deliver what it
//! is configured for? Per path: TCP bulk throughput vs the configured rate,
//! idle RTT vs twice the delay, the emulator's CPU per 100 Mbit/s; and MPTCP
//! over all paths vs TCP over one, measured in the same run.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use edgemig_testbed::units::{parse_duration, parse_rate};
use edgemig_testbed::{TestbedConfig, UpOptions, plan};
use serde::Serialize;

use crate::cpu::cpu_time;
use crate::tools::{ToolError, TrafficTool};

/// Port of the traffic servers the benchmark starts.
const PORT: u16 = 7100;

/// Errors of the benchmark.
#[derive(Debug, thiserror::Error)]
pub enum LinksError {
    /// The testbed could not be built.
    #[error("Cannot bring the benchmark testbed up")]
    Testbed(#[from] edgemig_testbed::TestbedError),
    /// A measurement failed.
    #[error("Measurement failed")]
    Tool(#[from] ToolError),
    /// The config has no path to measure.
    #[error("The config has no [[path]] to measure")]
    NoPath,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct LinksOptions {
    /// The topology (its paths are measured).
    pub config: TestbedConfig,
    /// Seconds per throughput measurement.
    pub seconds: f64,
    /// Path rates (Mbit/s) to repeat the measurement with; empty for none.
    pub sweep_mbit: Vec<u64>,
    /// `edgemigd` binary.
    pub agent: PathBuf,
    /// `edgemig-linkemu` binary.
    pub linkemu: PathBuf,
    /// Guest image (the testbed's agents need one).
    pub image_dir: PathBuf,
    /// The traffic tool (`edgemig-guest`).
    pub tool: PathBuf,
}

/// One path's numbers.
#[derive(Debug, Clone, Serialize)]
pub struct PathResult {
    /// `path1`, ...
    pub name: String,
    /// Configured rate.
    pub rate_mbit: f64,
    /// TCP bulk throughput measured over this path alone.
    pub measured_mbit: f64,
    /// Configured one-way delay.
    pub delay_ms: f64,
    /// Median idle RTT measured.
    pub rtt_ms: f64,
}

/// One configuration's numbers (field names are a contract).
#[derive(Debug, Clone, Serialize)]
pub struct LinksRun {
    /// Per path.
    pub paths: Vec<PathResult>,
    /// MPTCP bulk over all paths between the first path's sites.
    pub mptcp_mbit: f64,
    /// TCP bulk over the first path (the baseline, same run).
    pub tcp_mbit: f64,
    /// `mptcp_mbit / tcp_mbit`.
    pub mptcp_speedup: f64,
    /// Emulator CPU (fraction of one core) per 100 Mbit/s forwarded.
    pub emulator_cpu_per_100mbit: f64,
}

/// The report: the config's run, then the rate sweep.
#[derive(Debug, Clone, Serialize)]
pub struct LinksReport {
    /// The run on the given (or default) config.
    #[serde(flatten)]
    pub main: LinksRun,
    /// The same with every path's rate set to each sweep rate.
    pub sweep: Vec<LinksSweepPoint>,
    /// Seconds per throughput measurement.
    pub seconds: f64,
}

/// One sweep point.
#[derive(Debug, Clone, Serialize)]
pub struct LinksSweepPoint {
    /// The rate every path was set to.
    pub path_rate_mbit: u64,
    /// Its run.
    #[serde(flatten)]
    pub run: LinksRun,
}

fn bench_name() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "bl{}x{}",
        std::process::id() % 100_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Ends the benchmark's own processes and removes its testbed however the
/// run ends.
pub(crate) struct Cleanup {
    /// Testbed name.
    pub testbed: String,
    /// Pids of processes the benchmark started, with a command-line marker.
    pub pids: Vec<(u32, String)>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for (pid, marker) in &self.pids {
            edgemig_testbed::process::stop(*pid, marker, Duration::from_secs(2));
        }
        if let Err(error) = edgemig_testbed::down(&self.testbed) {
            tracing::warn!(testbed = %self.testbed, %error, "benchmark testbed cleanup failed");
        }
    }
}

/// Runs the benchmark.
pub async fn run_links(opts: &LinksOptions) -> Result<LinksReport, LinksError> {
    let main = run_one(opts, &opts.config).await?;
    let mut sweep = Vec::new();
    for &mbit in &opts.sweep_mbit {
        let mut config = opts.config.clone();
        for p in &mut config.paths {
            p.shape.rate = format!("{mbit}mbit");
        }
        sweep.push(LinksSweepPoint {
            path_rate_mbit: mbit,
            run: run_one(opts, &config).await?,
        });
    }
    Ok(LinksReport {
        main,
        sweep,
        seconds: opts.seconds,
    })
}

async fn run_one(opts: &LinksOptions, config: &TestbedConfig) -> Result<LinksRun, LinksError> {
    if config.paths.is_empty() {
        return Err(LinksError::NoPath);
    }
    let name = bench_name();
    let up = UpOptions {
        name: name.clone(),
        config: config.clone(),
        agent: opts.agent.clone(),
        linkemu: opts.linkemu.clone(),
        image_dir: opts.image_dir.clone(),
    };
    let state = edgemig_testbed::up(&up).await?;
    let mut cleanup = Cleanup {
        testbed: name.clone(),
        pids: Vec::new(),
    };
    let plan = plan(&name, config);
    let tool = TrafficTool::new(&opts.tool);
    let mut servers = Vec::new();
    for p in &plan.paths {
        if !servers.contains(&p.b.netns) {
            let log = state.dir.join(format!("serve-{}.log", p.b.node));
            let pid = tool.serve(&p.b.netns, PORT, &log)?;
            cleanup.pids.push((pid, format!("0.0.0.0:{PORT}")));
            servers.push(p.b.netns.clone());
        }
    }
    let first = &plan.paths[0];
    let first_target = format!("{}:{PORT}", first.b.addr.addr());
    wait_listening(&tool, &first.a.netns, &first_target).await?;

    let mut paths = Vec::new();
    let mut cpu_per_100 = Vec::new();
    for p in &plan.paths {
        let target = format!("{}:{PORT}", p.b.addr.addr());
        let echo = tool.client(&p.a.netns, &target, "echo", 2.0, true)?;
        let emulator = state
            .processes
            .iter()
            .find(|r| r.role == format!("linkemu:{}", p.name))
            .map(|r| r.pid);
        let before = emulator.and_then(cpu_time);
        let bulk = tool.client(&p.a.netns, &target, "bulk", opts.seconds, true)?;
        let after = emulator.and_then(cpu_time);
        let mbit = bulk["mbit"].as_f64().unwrap_or(0.0);
        if let (Some(b), Some(a)) = (before, after)
            && mbit > 0.0
        {
            let core = (a - b).as_secs_f64() / opts.seconds;
            cpu_per_100.push(core * 100.0 / mbit);
        }
        paths.push(PathResult {
            name: p.name.clone(),
            rate_mbit: parse_rate(&p.shape.rate).unwrap_or(0) as f64 / 1e6,
            measured_mbit: mbit,
            delay_ms: parse_duration(&p.shape.delay)
                .unwrap_or(Duration::ZERO)
                .as_secs_f64()
                * 1e3,
            rtt_ms: echo["rtt_ms_p50"].as_f64().unwrap_or(f64::NAN),
        });
    }
    let mptcp = tool.client(&first.a.netns, &first_target, "bulk", opts.seconds, false)?;
    let mptcp_mbit = mptcp["mbit"].as_f64().unwrap_or(0.0);
    let tcp_mbit = paths[0].measured_mbit;
    Ok(LinksRun {
        mptcp_speedup: if tcp_mbit > 0.0 {
            mptcp_mbit / tcp_mbit
        } else {
            0.0
        },
        mptcp_mbit,
        tcp_mbit,
        emulator_cpu_per_100mbit: if cpu_per_100.is_empty() {
            f64::NAN
        } else {
            cpu_per_100.iter().sum::<f64>() / cpu_per_100.len() as f64
        },
        paths,
    })
}

async fn wait_listening(tool: &TrafficTool, netns: &str, target: &str) -> Result<(), ToolError> {
    let mut last = None;
    for _ in 0..50 {
        match tool.client(netns, target, "echo", 0.2, true) {
            Ok(_) => return Ok(()),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(last.unwrap_or(ToolError::Summary("server never answered".into())))
}
