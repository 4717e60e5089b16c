//! `edgemig bench follow`: what the follow policy buys a commuting client.
//! On a three-site testbed, alice commutes past the sites along a scripted
//! sequence of access-link delays (with a stretch where the best site
//! flaps); her VM runs with each strategy in turn, in the same run:
//! `follow` (the policy as an operator would set it), `never` (the VM
//! stays at the first site) and `always` (the policy with no minimum gain,
//! no hold and no cap: it moves at every change). Measured: the RTT alice
//! sees above the best achievable at each moment (the nearest site's
//! configured round trip), integrated over time, the migrations made and
//! the bytes they moved.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use edgemig_api::{ApiClient, PolicySpec, VmCreate};
use edgemig_guest_proto::{GuestRequest, SERVICE_PORT};
use edgemig_migration::ReportStatus;
use edgemig_policy::FollowPolicy;
use edgemig_testbed::{TestbedConfig, UpOptions};
use serde::Serialize;
use serde_json::json;

use crate::links::Cleanup;
use crate::session::Session;
use crate::tools::TrafficTool;

/// Errors of the benchmark.
#[derive(Debug, thiserror::Error)]
pub enum FollowBenchError {
    /// The testbed could not be built.
    #[error("Cannot bring the benchmark testbed up")]
    Testbed(#[from] edgemig_testbed::TestbedError),
    /// An agent request failed.
    #[error("Agent request failed")]
    Api(#[from] edgemig_api::ClientError),
    /// A link change failed.
    #[error("Cannot change alice's link")]
    Link(#[from] edgemig_testbed::control::ControlError),
    /// The session could not start.
    #[error("Cannot start alice's session")]
    Spawn(#[source] std::io::Error),
    /// The config does not fit.
    #[error("{0}")]
    Config(String),
}

/// One step of the commute: alice's one-way access delay to each site (ms,
/// in site order) for `seconds`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CommuteStep {
    /// One-way delay of alice's access link to each site, ms.
    pub delay_ms: Vec<u32>,
    /// How long the step lasts.
    pub seconds: u32,
}

/// The default commute over three sites: near a, near b, a stretch where
/// b and c trade places every 4 s, then near c.
pub fn default_commute(step_s: u32) -> Vec<CommuteStep> {
    let mut steps = vec![
        CommuteStep {
            delay_ms: vec![2, 15, 30],
            seconds: step_s,
        },
        CommuteStep {
            delay_ms: vec![15, 2, 15],
            seconds: step_s,
        },
    ];
    for i in 0..4 {
        steps.push(CommuteStep {
            delay_ms: if i % 2 == 0 {
                vec![20, 6, 4]
            } else {
                vec![20, 4, 6]
            },
            seconds: 4,
        });
    }
    steps.push(CommuteStep {
        delay_ms: vec![30, 15, 2],
        seconds: step_s,
    });
    steps
}

/// The three-site testbed of the benchmark.
pub const FOLLOW_TESTBED: &str = r#"[[site]]
name = "site-a"
vm_subnet = "10.10.0.0/24"
[[site]]
name = "site-b"
vm_subnet = "10.20.0.0/24"
[[site]]
name = "site-c"
vm_subnet = "10.30.0.0/24"
[[path]]
between = ["site-a", "site-b"]
rate = "100mbit"
delay = "2ms"
[[path]]
between = ["site-b", "site-c"]
rate = "100mbit"
delay = "2ms"
[[path]]
between = ["site-a", "site-c"]
rate = "100mbit"
delay = "2ms"
[[client]]
name = "alice"
links = [ { site = "site-a", rate = "100mbit", delay = "2ms" },
          { site = "site-b", rate = "100mbit", delay = "15ms" },
          { site = "site-c", rate = "100mbit", delay = "30ms" } ]
"#;

/// What to run.
#[derive(Debug, Clone)]
pub struct FollowBenchOptions {
    /// Three sites (the first is where the VM starts) and a client
    /// `alice` linked to each.
    pub config: TestbedConfig,
    /// The commute.
    pub commute: Vec<CommuteStep>,
    /// The `follow` strategy's policy.
    pub policy: FollowPolicy,
    /// Guest RAM in MiB.
    pub memory_mib: u64,
    /// `edgemigd` binary.
    pub agent: PathBuf,
    /// `edgemig-linkemu` binary.
    pub linkemu: PathBuf,
    /// Guest image.
    pub image_dir: PathBuf,
    /// The static traffic tool.
    pub tool: PathBuf,
}

/// One strategy's result (field names are a contract).
#[derive(Debug, Clone, Serialize)]
pub struct StrategyRun {
    /// `follow`, `never` or `always`.
    pub name: String,
    /// RTT above the best achievable, integrated over the commute, ms·s.
    pub excess_rtt_ms_s: f64,
    /// Completed migrations.
    pub migrations: u32,
    /// Bytes those migrations moved (memory and disk).
    pub bytes: u64,
    /// Connection errors alice saw.
    pub errors: u64,
    /// Median RTT alice saw over the commute, ms.
    pub rtt_ms_p50: f64,
}

/// The whole benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct FollowBenchReport {
    /// One entry per strategy.
    pub strategies: Vec<StrategyRun>,
    /// The commute that was driven.
    pub commute: Vec<CommuteStep>,
    /// Conditions, in words.
    pub conditions: String,
}

/// The `always` strategy: the policy with every brake off.
pub fn always_policy() -> FollowPolicy {
    FollowPolicy {
        min_gain: 0.01,
        hold_ms: 0,
        max_per_hour: 64,
        return_cooldown_ms: 0,
        return_gain_factor: 1.0,
        ..FollowPolicy::default()
    }
}

/// Runs the benchmark.
pub async fn run_follow_bench(
    opts: &FollowBenchOptions,
) -> Result<FollowBenchReport, FollowBenchError> {
    if opts.config.sites.len() < 3 || !opts.config.clients.iter().any(|c| c.name == "alice") {
        return Err(FollowBenchError::Config(
            "bench follow needs three sites and a client named alice linked to each".into(),
        ));
    }
    if opts
        .commute
        .iter()
        .any(|s| s.delay_ms.len() != opts.config.sites.len())
    {
        return Err(FollowBenchError::Config(
            "every commute step needs one delay per site".into(),
        ));
    }
    let mut strategies = Vec::new();
    for (name, policy) in [
        ("follow", Some(opts.policy.clone())),
        ("never", None),
        ("always", Some(always_policy())),
    ] {
        strategies.push(run_strategy(opts, name, policy).await?);
    }
    Ok(FollowBenchReport {
        strategies,
        commute: opts.commute.clone(),
        conditions: format!(
            "{} sites, alice's access links 100 Mbit/s with the scripted delays, {} MiB TCG guest, follow policy: {}; best achievable RTT = twice the smallest one-way access delay at the time",
            opts.config.sites.len(),
            opts.memory_mib,
            opts.policy
        ),
    })
}

async fn run_strategy(
    opts: &FollowBenchOptions,
    name: &str,
    policy: Option<FollowPolicy>,
) -> Result<StrategyRun, FollowBenchError> {
    let testbed = format!("bf{}{}", std::process::id() % 100_000, &name[..1]);
    let state = edgemig_testbed::up(&UpOptions {
        name: testbed.clone(),
        config: opts.config.clone(),
        agent: opts.agent.clone(),
        linkemu: opts.linkemu.clone(),
        image_dir: opts.image_dir.clone(),
    })
    .await?;
    let _cleanup = Cleanup {
        testbed,
        pids: Vec::new(),
    };
    let sites: Vec<ApiClient> = state
        .sites
        .iter()
        .map(|s| ApiClient::new(&s.api_socket).with_timeout(Duration::from_secs(120)))
        .collect();
    let alice = state.netns_of("alice").unwrap_or_default().to_string();
    let vm = "commuter";
    let created = sites[0]
        .create_vm(&VmCreate::builtin(vm, opts.memory_mib))
        .await?;
    sites[0].start_vm(vm).await?;
    sites[0].guest(vm, &GuestRequest::Hello).await?;
    let ip = created.nics[0].address.clone().unwrap_or_default();
    let target = format!(
        "{}:{SERVICE_PORT}",
        ip.split('/').next().unwrap_or_default()
    );
    let tool = TrafficTool::new(&opts.tool);
    let set_step = |step: &CommuteStep| -> Result<(), FollowBenchError> {
        for (site, delay) in state.sites.iter().zip(&step.delay_ms) {
            let link = format!("alice-{}", site.name);
            if let Some(l) = state.links.iter().find(|l| l.name == link) {
                edgemig_testbed::control::request(
                    &l.control,
                    &json!({ "delay": format!("{delay}ms") }),
                )?;
            }
        }
        Ok(())
    };
    set_step(&opts.commute[0])?;
    let session = Session::start(&tool, &alice, &target).map_err(FollowBenchError::Spawn)?;
    if let Some(p) = policy {
        sites[0].set_policy(vm, &PolicySpec::Follow(p)).await?;
    }
    let started = Instant::now();
    let mut bounds = Vec::new();
    for step in &opts.commute {
        set_step(step)?;
        let from = Instant::now();
        tokio::time::sleep(Duration::from_secs(u64::from(step.seconds))).await;
        let best = 2.0 * f64::from(step.delay_ms.iter().copied().min().unwrap_or(0));
        bounds.push((from, Instant::now(), best));
    }
    // Let a migration started by the last step finish before counting.
    for _ in 0..120 {
        let mut running = false;
        for s in &sites {
            running |= s.migrations().await?.iter().any(|m| m.running);
        }
        if !running {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut migrations = 0;
    let mut bytes = 0;
    for s in &sites {
        for m in s.migrations().await? {
            if let Some(r) = m.report.filter(|r| r.status == ReportStatus::Completed) {
                migrations += 1;
                bytes += r.memory_bytes + r.disk_bytes;
            }
        }
    }
    let lines = session.snapshot();
    let mut excess = 0.0;
    let mut rtts = Vec::new();
    for (from, to, best) in &bounds {
        let window: Vec<f64> = lines
            .iter()
            .filter(|(t, _)| t >= from && t < to)
            .map(|(_, v)| v["rtt_ms"].as_f64().unwrap_or(1000.0))
            .collect();
        // One line per second: each contributes one second of excess; an
        // unanswered second counts as 1 s of RTT.
        excess += window.iter().map(|r| (r - best).max(0.0)).sum::<f64>();
        rtts.extend(window);
    }
    rtts.sort_by(f64::total_cmp);
    tracing::info!(
        strategy = name,
        excess,
        migrations,
        elapsed_s = started.elapsed().as_secs(),
        "strategy done"
    );
    Ok(StrategyRun {
        name: name.into(),
        excess_rtt_ms_s: excess,
        migrations,
        bytes,
        errors: session.errors(),
        rtt_ms_p50: rtts.get(rtts.len() / 2).copied().unwrap_or(f64::NAN),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_commute_fits_the_default_testbed() {
        let config = TestbedConfig::parse(FOLLOW_TESTBED).unwrap();
        let commute = default_commute(20);
        assert!(
            commute
                .iter()
                .all(|s| s.delay_ms.len() == config.sites.len())
        );
        // The best site changes: a, then b, then b/c flapping, then c.
        let best: Vec<usize> = commute
            .iter()
            .map(|s| (0..3).min_by_key(|&i| s.delay_ms[i]).unwrap())
            .collect();
        assert_eq!(best, vec![0, 1, 2, 1, 2, 1, 2]);
        assert!(always_policy().validate().is_ok());
    }
}
