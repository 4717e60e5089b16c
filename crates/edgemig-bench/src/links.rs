//! `edgemig bench links`: does the testbed's link emulator deliver what it
//! is configured for? Per path: TCP bulk throughput vs the configured rate,
//! idle RTT vs twice the delay, the emulator's CPU per 100 Mbit/s; MPTCP
//! over all paths vs TCP over one, measured in the same run; and the same
//! per-path rate and RTT again while a TCG guest keeps a core busy (its
//! memory writer flat out), as during a benchmark's migration. Each path is
//! judged against the tolerances [`RATE_TOLERANCE_PCT`] and
//! [`RTT_TOLERANCE_MS`].

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use edgemig_api::{ApiClient, VmCreate};
use edgemig_guest_proto::GuestRequest;
use edgemig_testbed::state::TestbedState;
use edgemig_testbed::units::{parse_duration, parse_rate};
use edgemig_testbed::{TestbedConfig, UpOptions, plan};
use serde::Serialize;

use crate::cpu::cpu_time;
use crate::tools::{ToolError, TrafficTool};

/// Port of the traffic servers the benchmark starts.
const PORT: u16 = 7100;

/// Largest accepted difference of a path's TCP goodput from its configured
/// rate, percent.
pub const RATE_TOLERANCE_PCT: f64 = 5.0;

/// Largest accepted difference of a path's idle RTT from twice its
/// configured delay, ms.
pub const RTT_TOLERANCE_MS: f64 = 0.5;

/// The busy guest: RAM and the memory writer's working set, MiB.
const BUSY_GUEST_MIB: (u64, u32) = (256, 64);

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
    /// An agent request for the busy guest failed.
    #[error("Agent request for the busy guest failed")]
    Api(#[from] edgemig_api::ClientError),
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
    /// Measure the paths again while a TCG guest keeps a core busy.
    pub loaded: bool,
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
    /// `measured_mbit` against `rate_mbit`, percent (negative: slower).
    pub rate_error_pct: f64,
    /// `rtt_ms` minus twice `delay_ms`.
    pub rtt_excess_ms: f64,
    /// Whether both are within the tolerances ([`RATE_TOLERANCE_PCT`],
    /// [`RTT_TOLERANCE_MS`]).
    pub within_tolerance: bool,
}

impl PathResult {
    fn new(name: &str, rate_mbit: f64, measured_mbit: f64, delay_ms: f64, rtt_ms: f64) -> Self {
        let rate_error_pct = if rate_mbit > 0.0 {
            100.0 * (measured_mbit / rate_mbit - 1.0)
        } else {
            f64::NAN
        };
        let rtt_excess_ms = rtt_ms - 2.0 * delay_ms;
        Self {
            name: name.to_string(),
            rate_mbit,
            measured_mbit,
            delay_ms,
            rtt_ms,
            rate_error_pct,
            rtt_excess_ms,
            within_tolerance: rate_error_pct.abs() <= RATE_TOLERANCE_PCT
                && rtt_excess_ms.abs() <= RTT_TOLERANCE_MS,
        }
    }
}

/// The tolerances each path is judged against.
#[derive(Debug, Clone, Serialize)]
pub struct Tolerances {
    /// [`RATE_TOLERANCE_PCT`].
    pub rate_pct: f64,
    /// [`RTT_TOLERANCE_MS`].
    pub rtt_ms: f64,
}

/// The paths measured again while a TCG guest keeps a core busy.
#[derive(Debug, Clone, Serialize)]
pub struct LoadedRun {
    /// What kept the core busy, in words.
    pub guest: String,
    /// CPU its QEMU process used meanwhile, in cores (about 1 when busy).
    pub guest_cpu_cores: f64,
    /// Per path, measured as in the idle run.
    pub paths: Vec<PathResult>,
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
    /// The config's paths measured again with a busy TCG guest (`null`
    /// when not asked for).
    pub loaded: Option<LoadedRun>,
    /// The tolerances of `within_tolerance`.
    pub tolerances: Tolerances,
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
    let (main, loaded) = run_one(opts, &opts.config, opts.loaded).await?;
    let mut sweep = Vec::new();
    for &mbit in &opts.sweep_mbit {
        let mut config = opts.config.clone();
        for p in &mut config.paths {
            p.shape.rate = format!("{mbit}mbit");
        }
        sweep.push(LinksSweepPoint {
            path_rate_mbit: mbit,
            run: run_one(opts, &config, false).await?.0,
        });
    }
    Ok(LinksReport {
        main,
        sweep,
        seconds: opts.seconds,
        loaded,
        tolerances: Tolerances {
            rate_pct: RATE_TOLERANCE_PCT,
            rtt_ms: RTT_TOLERANCE_MS,
        },
    })
}

async fn run_one(
    opts: &LinksOptions,
    config: &TestbedConfig,
    loaded: bool,
) -> Result<(LinksRun, Option<LoadedRun>), LinksError> {
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

    let (paths, cpu_per_100) = measure_paths(&tool, &plan, &state, opts.seconds)?;
    let mptcp = tool.client(&first.a.netns, &first_target, "bulk", opts.seconds, false)?;
    let mptcp_mbit = mptcp["mbit"].as_f64().unwrap_or(0.0);
    let tcp_mbit = paths[0].measured_mbit;
    let run = LinksRun {
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
    };
    let loaded = if loaded {
        Some(measure_loaded(opts, &tool, &plan, &state).await?)
    } else {
        None
    };
    Ok((run, loaded))
}

/// TCP echo and bulk over each path alone; the per-path results and the
/// emulator's CPU per 100 Mbit/s of each.
fn measure_paths(
    tool: &TrafficTool,
    plan: &edgemig_testbed::Plan,
    state: &TestbedState,
    seconds: f64,
) -> Result<(Vec<PathResult>, Vec<f64>), LinksError> {
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
        let bulk = tool.client(&p.a.netns, &target, "bulk", seconds, true)?;
        let after = emulator.and_then(cpu_time);
        let mbit = bulk["mbit"].as_f64().unwrap_or(0.0);
        if let (Some(b), Some(a)) = (before, after)
            && mbit > 0.0
        {
            let core = (a - b).as_secs_f64() / seconds;
            cpu_per_100.push(core * 100.0 / mbit);
        }
        paths.push(PathResult::new(
            &p.name,
            parse_rate(&p.shape.rate).unwrap_or(0) as f64 / 1e6,
            mbit,
            parse_duration(&p.shape.delay)
                .unwrap_or(Duration::ZERO)
                .as_secs_f64()
                * 1e3,
            echo["rtt_ms_p50"].as_f64().unwrap_or(f64::NAN),
        ));
    }
    Ok((paths, cpu_per_100))
}

/// Starts a guest at the first site writing its memory flat out (a TCG
/// vCPU keeps a host core busy), measures every path again, and stops it.
async fn measure_loaded(
    opts: &LinksOptions,
    tool: &TrafficTool,
    plan: &edgemig_testbed::Plan,
    state: &TestbedState,
) -> Result<LoadedRun, LinksError> {
    let site = state.sites.first().ok_or(LinksError::NoPath)?;
    let api = ApiClient::new(&site.api_socket).with_timeout(Duration::from_secs(300));
    let vm = "busy";
    let (memory_mib, writer_mib) = BUSY_GUEST_MIB;
    api.create_vm(&VmCreate::builtin(vm, memory_mib)).await?;
    api.start_vm(vm).await?;
    api.guest(vm, &GuestRequest::Hello).await?;
    api.guest(
        vm,
        &GuestRequest::MemWrite {
            mib: writer_mib,
            rate_mib_s: None,
        },
    )
    .await?;
    let qemu = api.vm(vm).await?.pid;
    let before = qemu.and_then(cpu_time);
    let started = std::time::Instant::now();
    let measured = measure_paths(tool, plan, state, opts.seconds);
    let elapsed = started.elapsed().as_secs_f64().max(1e-9);
    let after = qemu.and_then(cpu_time);
    let _ = api.stop_vm(vm).await;
    let (paths, _) = measured?;
    Ok(LoadedRun {
        guest: format!(
            "a {memory_mib} MiB TCG guest at {} writing {writer_mib} MiB of memory flat out",
            site.name
        ),
        guest_cpu_cores: match (before, after) {
            (Some(b), Some(a)) => a.saturating_sub(b).as_secs_f64() / elapsed,
            _ => f64::NAN,
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
