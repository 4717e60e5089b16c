//! `edgemig demo`: the paper's story with real parts. Alice talks to her VM
//! at the far site over MPTCP; she commutes (her link to site-a gets slower
//! and farther), the VM's follow policy moves it to site-b over both inter-site paths,
//! hands its address over, and her connection survives and gets faster.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use edgemig_api::{ApiClient, PolicySpec, VmCreate};
use edgemig_guest_proto::{GuestRequest, SERVICE_PORT};
use edgemig_migration::{MigrationReport, ReportStatus};
use edgemig_policy::FollowPolicy;
use edgemig_testbed::units::parse_rate;
use edgemig_testbed::{TestbedConfig, UpOptions};
use serde::Serialize;
use serde_json::json;

use crate::links::Cleanup;
use crate::session::Session;
use crate::tools::{ToolError, TrafficTool};

/// Errors of the demo.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The testbed could not be built.
    #[error("Cannot bring the demo testbed up")]
    Testbed(#[from] edgemig_testbed::TestbedError),
    /// An agent request failed.
    #[error("Agent request failed")]
    Api(#[from] edgemig_api::ClientError),
    /// A measurement failed.
    #[error("Measurement failed")]
    Tool(#[from] ToolError),
    /// The migration failed.
    #[error("The migration did not complete: {0}")]
    Migration(String),
    /// A process could not start.
    #[error("Cannot start alice's session")]
    Spawn(#[source] std::io::Error),
    /// Testbed link change failed.
    #[error("Cannot change alice's link")]
    Link(#[from] edgemig_testbed::control::ControlError),
}

/// What to run.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Testbed name.
    pub name: String,
    /// Keep the testbed afterwards.
    pub keep: bool,
    /// Seconds per throughput measurement.
    pub seconds: f64,
    /// Guest RAM in MiB.
    pub memory_mib: u64,
    /// `edgemigd` binary.
    pub agent: PathBuf,
    /// `edgemig-linkemu` binary.
    pub linkemu: PathBuf,
    /// Guest image.
    pub image_dir: PathBuf,
    /// The traffic tool (`edgemig-guest`).
    pub tool: PathBuf,
    /// Print progress lines while it runs.
    pub live: bool,
}

/// Bytes per path.
#[derive(Debug, Clone, Serialize)]
pub struct DemoPath {
    /// Interface name.
    pub name: String,
    /// Bytes sent during the migration.
    pub bytes: u64,
}

/// The demo's summary (field names are a contract).
#[derive(Debug, Clone, Serialize)]
pub struct DemoSummary {
    /// Where the VM runs at the end.
    pub vm_site: String,
    /// Whether alice's MPTCP session survived without an error.
    pub connection_survived: bool,
    /// Migration time.
    pub total_ms: u64,
    /// Migration downtime.
    pub downtime_ms: u64,
    /// Estimated time of plain QEMU over one path (bytes sent / one path's rate).
    pub baseline_estimate_ms: u64,
    /// Bytes per path.
    pub paths: Vec<DemoPath>,
    /// Alice's RTT to the VM before the migration (after her commute).
    pub rtt_before_ms: f64,
    /// Alice's RTT to the VM after the handoff.
    pub rtt_after_ms: f64,
    /// Alice's bulk throughput before.
    pub mbit_before: f64,
    /// Alice's bulk throughput after.
    pub mbit_after: f64,
    /// The full migration report.
    pub report: MigrationReport,
}

fn say(live: bool, text: &str) {
    if live {
        eprintln!("demo: {text}");
    }
}

/// Runs the demo.
pub async fn run_demo(opts: &DemoOptions) -> Result<DemoSummary, DemoError> {
    let config = TestbedConfig::default_config();
    say(
        opts.live,
        "building the edge testbed: site-a, site-b, two 50 Mbit/s paths, alice",
    );
    let state = edgemig_testbed::up(&UpOptions {
        name: opts.name.clone(),
        config: config.clone(),
        agent: opts.agent.clone(),
        linkemu: opts.linkemu.clone(),
        image_dir: opts.image_dir.clone(),
    })
    .await?;
    let cleanup = Cleanup {
        testbed: opts.name.clone(),
        pids: Vec::new(),
    };
    let result = story(opts, &config, &state).await;
    if opts.keep {
        std::mem::forget(cleanup);
        say(
            opts.live,
            &format!(
                "kept testbed {} (edgemig testbed down --name {})",
                opts.name, opts.name
            ),
        );
    }
    result
}

async fn story(
    opts: &DemoOptions,
    config: &TestbedConfig,
    state: &edgemig_testbed::TestbedState,
) -> Result<DemoSummary, DemoError> {
    let site = |name: &str| {
        let s = state.sites.iter().find(|s| s.name == name);
        ApiClient::new(s.map(|s| s.api_socket.clone()).unwrap_or_default())
            .with_timeout(Duration::from_secs(600))
    };
    let (a, b) = (site("site-a"), site("site-b"));
    let alice = state.netns_of("alice").unwrap_or_default().to_string();
    let tool = TrafficTool::new(&opts.tool);
    let vm = "alice-app";
    say(opts.live, "booting alice's VM at site-a");
    let created = a
        .create_vm(&VmCreate {
            name: vm.into(),
            memory_mib: opts.memory_mib,
            vcpus: 1,
            disk_mib: None,
            base_image: None,
            image: None,
            firmware: None,
            mptcp_apps: Default::default(),
        })
        .await?;
    a.start_vm(vm).await?;
    a.guest(vm, &GuestRequest::Hello).await?;
    a.guest(
        vm,
        &GuestRequest::MemFill {
            mib: u32::try_from(opts.memory_mib / 4).unwrap_or(32),
        },
    )
    .await?;
    let old_ip = created.nics[0].address.clone().unwrap_or_default();
    let old_ip = old_ip.split('/').next().unwrap_or_default().to_string();
    let old_target = format!("{old_ip}:{SERVICE_PORT}");
    let mut ready = false;
    for _ in 0..50 {
        if tool.client(&alice, &old_target, "echo", 0.3, false).is_ok() {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if !ready {
        tool.client(&alice, &old_target, "echo", 0.3, false)?;
    }
    say(
        opts.live,
        "alice commutes: her link to site-a becomes 10 Mbit/s, 40 ms",
    );
    let link = state.links.iter().find(|l| l.name == "alice-site-a");
    if let Some(l) = link {
        edgemig_testbed::control::request(&l.control, &json!({"rate": "10mbit", "delay": "40ms"}))?;
    }
    let session = Session::start(&tool, &alice, &old_target).map_err(DemoError::Spawn)?;
    let before = tool.client(&alice, &old_target, "bulk", opts.seconds, false)?;
    let mbit_before = before["mbit"].as_f64().unwrap_or(0.0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let migration_start = Instant::now();
    let rtt_before = session.rtt_between(session.started, migration_start);
    say(
        opts.live,
        &format!(
            "alice: {mbit_before:.1} Mbit/s, RTT {rtt_before:.1} ms to her VM at site-a; setting the VM's policy to follow her"
        ),
    );
    // The follow policy decides: site-b is now far nearer alice, so once
    // that holds for the hold time the VM moves there, over both paths,
    // with the network handoff.
    let policy = FollowPolicy {
        hold_ms: 3_000,
        ..FollowPolicy::default()
    };
    a.set_policy(vm, &PolicySpec::Follow(policy)).await?;
    let decided = Instant::now();
    loop {
        if a.migration(vm).await.is_ok() {
            break;
        }
        if decided.elapsed() > Duration::from_secs(90) {
            let why = a
                .vm(vm)
                .await
                .ok()
                .and_then(|v| v.policy)
                .map(|p| format!("{}: {}", p.status, p.explanation.unwrap_or_default()))
                .unwrap_or_default();
            return Err(DemoError::Migration(format!(
                "the follow policy did not move the VM within 90 s ({why})"
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if let Some(p) = a.vm(vm).await.ok().and_then(|v| v.policy) {
        say(
            opts.live,
            &format!(
                "follow policy: {}",
                p.explanation.unwrap_or_else(|| p.status.clone())
            ),
        );
    }
    let report = loop {
        let view = a.migration(vm).await?;
        if let Some(r) = view.report.filter(|_| !view.running) {
            break r;
        }
        if opts.live
            && let Some(p) = view.progress
        {
            let rtt = session
                .snapshot()
                .last()
                .and_then(|(_, v)| v["rtt_ms"].as_f64());
            eprintln!(
                "demo: {:<10} {:>7.1} MiB left {:>6.1} Mbit/s | alice RTT {}",
                p.phase.as_str(),
                p.bytes_left as f64 / 1048576.0,
                p.throughput_bps as f64 / 1e6,
                rtt.map_or_else(|| "-".to_string(), |r| format!("{r:.1} ms"))
            );
        }
        tokio::time::sleep(Duration::from_millis(1000)).await;
    };
    if report.status != ReportStatus::Completed {
        return Err(DemoError::Migration(
            report.error.clone().unwrap_or_default(),
        ));
    }
    let handed_over = Instant::now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let rtt_after = session.rtt_between(handed_over, Instant::now());
    let survived = session.errors() == 0
        && session
            .snapshot()
            .last()
            .is_some_and(|(t, _)| *t > handed_over);
    drop(session);
    let new_ip = report
        .network
        .as_ref()
        .map(|n| {
            n.new_address
                .split('/')
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .filter(|a| !a.is_empty())
        .unwrap_or(old_ip);
    let after = tool.client(
        &alice,
        &format!("{new_ip}:{SERVICE_PORT}"),
        "bulk",
        opts.seconds,
        false,
    )?;
    let path_rate = config
        .paths
        .first()
        .and_then(|p| parse_rate(&p.shape.rate).ok())
        .unwrap_or(1)
        .max(1);
    let sent = report
        .paths
        .iter()
        .map(|p| p.bytes)
        .sum::<u64>()
        .max(report.memory_bytes + report.disk_bytes);
    let at_b = b
        .vm(vm)
        .await
        .is_ok_and(|v| v.state == edgemig_api::VmState::Running);
    Ok(DemoSummary {
        vm_site: if at_b {
            "site-b".into()
        } else {
            "site-a".into()
        },
        connection_survived: survived,
        total_ms: report.total_ms,
        downtime_ms: report.downtime_ms.unwrap_or(0),
        baseline_estimate_ms: sent.saturating_mul(8_000) / path_rate,
        paths: report
            .paths
            .iter()
            .map(|p| DemoPath {
                name: p.name.clone(),
                bytes: p.bytes,
            })
            .collect(),
        rtt_before_ms: rtt_before,
        rtt_after_ms: rtt_after,
        mbit_before,
        mbit_after: after["mbit"].as_f64().unwrap_or(0.0),
        report,
    })
}
