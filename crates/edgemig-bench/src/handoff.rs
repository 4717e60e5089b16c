//! `edgemig bench handoff`: what a client gets from the network handoff.
//! A VM at the first site serves alice; it moves to the second site with
//! the handoff and, in the same run, without it (its address stays behind
//! the tunnel). Measured: alice's session survival and stall (10 ms echo
//! probes), her RTT and bulk throughput before and 10 s after, and two
//! references: the direct path to the destination site's host, and the
//! same kind of VM (TCG, same size, same guest agent) served at the
//! destination site from the start, so the handoff is judged against what
//! a VM there gives and not against TCG's own cost.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use edgemig_api::{ApiClient, MigrateRequest, VmCreate};
use edgemig_guest_proto::{GuestRequest, SERVICE_PORT};
use edgemig_migration::{MigrateOptions, ReportStatus};
use edgemig_testbed::{TestbedConfig, UpOptions};
use serde::Serialize;
use serde_json::Value;

use crate::links::Cleanup;
use crate::session::{Session, Stall};
use crate::tools::{ToolError, TrafficTool};

/// Errors of the benchmark.
#[derive(Debug, thiserror::Error)]
pub enum HandoffBenchError {
    /// The testbed could not be built.
    #[error("Cannot bring the benchmark testbed up")]
    Testbed(#[from] edgemig_testbed::TestbedError),
    /// An agent request failed.
    #[error("Agent request failed")]
    Api(#[from] edgemig_api::ClientError),
    /// A measurement failed.
    #[error("Measurement failed")]
    Tool(#[from] ToolError),
    /// The session could not start.
    #[error("Cannot start the client session")]
    Spawn(#[source] std::io::Error),
    /// The config does not fit.
    #[error("{0}")]
    Config(String),
    /// A migration failed.
    #[error("Migration failed: {0}")]
    Migration(String),
}

/// What to run.
#[derive(Debug, Clone)]
pub struct HandoffOptions {
    /// Topology: two sites and a client with a link to each.
    pub config: TestbedConfig,
    /// Seconds per throughput measurement.
    pub seconds: f64,
    /// `edgemigd` binary.
    pub agent: PathBuf,
    /// `edgemig-linkemu` binary.
    pub linkemu: PathBuf,
    /// Guest image.
    pub image_dir: PathBuf,
    /// The traffic tool.
    pub tool: PathBuf,
}

/// The report (field names are a contract).
#[derive(Debug, Clone, Serialize)]
pub struct HandoffReport {
    /// Migrations per mode.
    pub runs: u32,
    /// Whether the client's session survived every migration.
    pub survived: bool,
    /// Connection errors the client saw (all runs).
    pub errors: u64,
    /// Longest time without an answered probe over the session of the
    /// migration with handoff (10 ms probes, ms resolution).
    pub max_stall_ms: u64,
    /// The 99th percentile of that session's gaps between answers, ms.
    pub stall_p99_ms: u64,
    /// RTT to the VM before the migration.
    pub rtt_before_ms: f64,
    /// RTT to the VM 10 s after the migration, with handoff.
    pub rtt_after_ms: f64,
    /// RTT of the client's direct path to the destination site.
    pub rtt_direct_ms: f64,
    /// Bulk throughput to the VM before.
    pub mbit_before: f64,
    /// Bulk throughput to the VM 10 s after, with handoff.
    pub mbit_after: f64,
    /// Bulk throughput of the direct path to the destination site.
    pub mbit_direct: f64,
    /// Bulk throughput to the VM 10 s after a migration without handoff.
    pub mbit_no_handoff: f64,
    /// RTT to the VM 10 s after a migration without handoff.
    pub rtt_no_handoff_ms: f64,
    /// RTT to a VM of the same kind running at the destination site from
    /// the start (measured like `rtt_after_ms`, after the migration).
    pub rtt_reference_vm_ms: f64,
    /// Bulk throughput from that VM.
    pub mbit_reference_vm: f64,
}

struct Run {
    survived: bool,
    errors: u64,
    stall: Stall,
    reference: Option<(f64, f64)>,
    rtt_before: f64,
    rtt_after: f64,
    mbit_before: f64,
    mbit_after: f64,
    rtt_direct: f64,
    mbit_direct: f64,
}

/// Runs the benchmark.
pub async fn run_handoff_bench(opts: &HandoffOptions) -> Result<HandoffReport, HandoffBenchError> {
    let c = &opts.config;
    if c.sites.len() < 2 || c.clients.is_empty() {
        return Err(HandoffBenchError::Config(
            "The config needs two sites and a client".into(),
        ));
    }
    let with = run_once(opts, true).await?;
    let without = run_once(opts, false).await?;
    Ok(HandoffReport {
        runs: 1,
        survived: with.survived && without.survived,
        errors: with.errors + without.errors,
        max_stall_ms: with.stall.max_ms,
        stall_p99_ms: with.stall.p99_ms,
        rtt_before_ms: with.rtt_before,
        rtt_after_ms: with.rtt_after,
        rtt_direct_ms: with.rtt_direct,
        mbit_before: with.mbit_before,
        mbit_after: with.mbit_after,
        mbit_direct: with.mbit_direct,
        mbit_no_handoff: without.mbit_after,
        rtt_no_handoff_ms: without.rtt_after,
        rtt_reference_vm_ms: with.reference.map_or(f64::NAN, |r| r.0),
        mbit_reference_vm: with.reference.map_or(f64::NAN, |r| r.1),
    })
}

fn median(v: &Value) -> f64 {
    v["rtt_ms_p50"].as_f64().unwrap_or(f64::NAN)
}

async fn run_once(opts: &HandoffOptions, handoff: bool) -> Result<Run, HandoffBenchError> {
    let name = format!("bh{}{}", std::process::id() % 100_000, u8::from(handoff));
    let state = edgemig_testbed::up(&UpOptions {
        name: name.clone(),
        config: opts.config.clone(),
        agent: opts.agent.clone(),
        linkemu: opts.linkemu.clone(),
        image_dir: opts.image_dir.clone(),
    })
    .await?;
    let mut cleanup = Cleanup {
        testbed: name,
        pids: Vec::new(),
    };
    let (from, to) = (&state.sites[0], &state.sites[1]);
    let client = &opts.config.clients[0].name;
    let client_ns = state.netns_of(client).unwrap_or_default().to_string();
    let api = |s: &edgemig_testbed::state::SiteState| {
        ApiClient::new(&s.api_socket).with_timeout(Duration::from_secs(600))
    };
    let (a, b) = (api(from), api(to));
    let tool = TrafficTool::new(&opts.tool);

    // The reference: the client's own path to the destination site.
    let to_link = state
        .links
        .iter()
        .find(|l| {
            l.kind == "access"
                && l.ends[0].starts_with(&format!("{client} "))
                && l.ends[1].starts_with(&format!("{} ", to.name))
        })
        .ok_or_else(|| HandoffBenchError::Config(format!("{client} has no link to {}", to.name)))?;
    let site_ip = to_link.ends[1]
        .split(' ')
        .nth(1)
        .and_then(|a| a.split('/').next())
        .unwrap_or_default()
        .to_string();
    let log = state.dir.join("direct-serve.log");
    let pid = tool.serve(&to.netns, 7100, &log)?;
    cleanup.pids.push((pid, "0.0.0.0:7100".into()));
    let direct = format!("{site_ip}:7100");
    let mut probe = Err(ToolError::Summary("not tried".into()));
    for _ in 0..50 {
        probe = tool.client(&client_ns, &direct, "echo", 2.0, false);
        if probe.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rtt_direct = median(&probe?);
    let mbit_direct = tool.client(&client_ns, &direct, "bulk", opts.seconds, false)?["mbit"]
        .as_f64()
        .unwrap_or(0.0);

    let vm = "svc";
    let created = a.create_vm(&VmCreate::builtin(vm, 128)).await?;
    a.start_vm(vm).await?;
    // The reference VM boots meanwhile (only in the run with the handoff).
    let reference = if handoff {
        let created = b.create_vm(&reference_vm()).await?;
        b.start_vm(REFERENCE_VM).await?;
        Some(created)
    } else {
        None
    };
    a.guest(vm, &GuestRequest::Hello).await?;
    let old_ip = created.nics[0]
        .address
        .clone()
        .unwrap_or_default()
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let old = format!("{old_ip}:{SERVICE_PORT}");
    reachable(&tool, &client_ns, &old).await?;
    let session = Session::start(&tool, &client_ns, &old).map_err(HandoffBenchError::Spawn)?;
    let mbit_before = tool.client(&client_ns, &old, "bulk", opts.seconds, false)?["mbit"]
        .as_f64()
        .unwrap_or(0.0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before_end = Instant::now();
    let rtt_before = session.rtt_between(session.started, before_end);
    let options = MigrateOptions {
        handoff,
        ..MigrateOptions::default()
    };
    a.migrate(
        vm,
        &MigrateRequest {
            to: to.name.clone(),
            options,
        },
    )
    .await?;
    let report = loop {
        let view = a.migration(vm).await?;
        if let Some(r) = view.report.filter(|_| !view.running) {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    if report.status != ReportStatus::Completed {
        return Err(HandoffBenchError::Migration(
            report.error.unwrap_or_default(),
        ));
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    let window = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rtt_after = session.rtt_between(window, Instant::now());
    let survived =
        session.errors() == 0 && session.snapshot().last().is_some_and(|(t, _)| *t > window);
    let errors = session.errors();
    let stall = session.stall();
    drop(session);
    // A handoff that timed out retired the old address as well.
    let target = match report
        .network
        .as_ref()
        .filter(|n| n.handoff == "done" || n.handoff == "timeout")
    {
        Some(n) => format!(
            "{}:{SERVICE_PORT}",
            n.new_address.split('/').next().unwrap_or_default()
        ),
        None => old,
    };
    let mbit_after = tool.client(&client_ns, &target, "bulk", opts.seconds, false)?["mbit"]
        .as_f64()
        .unwrap_or(0.0);
    let _ = b.vm(vm).await?;
    // A reference that cannot be measured leaves its figures NaN (null):
    // the migration's own figures still count.
    let reference = match reference {
        Some(created) => {
            let measured = measure_reference(&b, &created, &tool, &client_ns, opts.seconds).await;
            let _ = b.stop_vm(REFERENCE_VM).await;
            measured
                .inspect_err(|e| {
                    tracing::warn!(error = %crate::paper::error_chain(e), "reference VM not measured");
                })
                .ok()
        }
        None => None,
    };
    Ok(Run {
        survived,
        errors,
        stall,
        reference,
        rtt_before,
        rtt_after,
        mbit_before,
        mbit_after,
        rtt_direct,
        mbit_direct,
    })
}

/// Name of the reference VM at the destination site.
const REFERENCE_VM: &str = "ref";

/// The reference VM: the same kind as the migrated one.
fn reference_vm() -> VmCreate {
    VmCreate::builtin(REFERENCE_VM, 128)
}

/// Waits until the echo service at `target` answers from `netns`.
async fn reachable(tool: &TrafficTool, netns: &str, target: &str) -> Result<(), ToolError> {
    let mut reach = Err(ToolError::Summary("not tried".into()));
    for _ in 0..50 {
        reach = tool.client(netns, target, "echo", 0.5, false);
        if reach.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    reach.map(|_| ())
}

/// alice's RTT (10 ms echo probes over 4 s, median of the seconds) and bulk
/// throughput from the reference VM `created` at the destination site.
async fn measure_reference(
    site: &ApiClient,
    created: &edgemig_api::VmInfo,
    tool: &TrafficTool,
    netns: &str,
    seconds: f64,
) -> Result<(f64, f64), HandoffBenchError> {
    site.guest(REFERENCE_VM, &GuestRequest::Hello).await?;
    let ip = created
        .nics
        .first()
        .and_then(|n| n.address.as_deref())
        .and_then(|a| a.split('/').next())
        .unwrap_or_default()
        .to_string();
    let target = format!("{ip}:{SERVICE_PORT}");
    reachable(tool, netns, &target).await?;
    let session = Session::start(tool, netns, &target).map_err(HandoffBenchError::Spawn)?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let rtt = session.rtt_between(session.started, Instant::now());
    drop(session);
    let mbit = tool.client(netns, &target, "bulk", seconds, false)?["mbit"]
        .as_f64()
        .unwrap_or(0.0);
    Ok((rtt, mbit))
}
