//! The migration's start (the follow policy deciding) and its course
//! through the source agent's API until its report, with a progress line
//! per second when live.

use std::time::{Duration, Instant};

use edgemig_api::{ApiClient, PolicySpec};
use edgemig_migration::{MigrationReport, ReportStatus};
use edgemig_policy::FollowPolicy;

use super::DemoError;
use super::curl::Download;
use super::progress::mbit_between;

/// Longest a migration of the demo may take.
const MIGRATION_LIMIT: Duration = Duration::from_secs(900);

/// Longest wait for the follow policy to start a migration.
const DECISION_LIMIT: Duration = Duration::from_secs(120);

/// The migration the policy started.
pub struct Started {
    /// Its destination.
    pub to: String,
    /// From setting the policy to the migration's start, ms.
    pub decided_ms: u64,
    /// The policy's explanation, on one line.
    pub explanation: String,
}

/// Sets `vm`'s policy to follow its clients (hold `hold_ms`) and waits for
/// the migration it starts, while alice's download runs.
pub async fn follow(
    a: &ApiClient,
    vm: &str,
    hold_ms: u64,
    download: &mut Download,
) -> Result<Started, DemoError> {
    let policy = FollowPolicy {
        hold_ms,
        ..FollowPolicy::default()
    };
    a.set_policy(vm, &PolicySpec::Follow(policy)).await?;
    let set = Instant::now();
    let explain = || async {
        a.vm(vm)
            .await
            .ok()
            .and_then(|v| v.policy)
            .map(|p| {
                (
                    p.status,
                    p.explanation.unwrap_or_default().replace('\n', "; "),
                )
            })
            .unwrap_or_default()
    };
    loop {
        if let Ok(view) = a.migration(vm).await {
            return Ok(Started {
                to: view.to,
                decided_ms: u64::try_from(set.elapsed().as_millis()).unwrap_or(u64::MAX),
                explanation: explain().await.1,
            });
        }
        if set.elapsed() > DECISION_LIMIT || !download.running() {
            let (status, why) = explain().await;
            return Err(DemoError::Timeout(format!(
                "the follow policy did not move the VM while alice downloaded ({status}: {why})"
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits for the migration of `vm` that `a` runs (started already) to end;
/// its report when it completed. While `live`, prints the phase, what is
/// left, the rate, and alice's download rate over the last second.
pub async fn until_done(
    a: &ApiClient,
    vm: &str,
    live: bool,
    download: Option<&Download>,
) -> Result<MigrationReport, DemoError> {
    let started = Instant::now();
    loop {
        let view = a.migration(vm).await?;
        if let Some(r) = view.report.filter(|_| !view.running) {
            if r.status != ReportStatus::Completed {
                return Err(DemoError::Migration(
                    r.error.unwrap_or_else(|| format!("{:?}", r.status)),
                ));
            }
            return Ok(r);
        }
        if live {
            let alice = download.and_then(|d| {
                let now = d.now_ms();
                mbit_between(&d.arrivals(), now.saturating_sub(1000), now)
            });
            let phase = view
                .phase
                .clone()
                .or_else(|| view.progress.as_ref().map(|p| p.phase.as_str().to_string()))
                .unwrap_or_default();
            let (left, rate) = view.progress.as_ref().map_or((0.0, 0.0), |p| {
                (
                    p.bytes_left as f64 / 1_048_576.0,
                    p.throughput_bps as f64 / 1e6,
                )
            });
            let alice = match (download, alice) {
                (None, _) => String::new(),
                (Some(_), None) => " | alice's download -".into(),
                (Some(_), Some(m)) => format!(" | alice's download {m:.1} Mbit/s"),
            };
            eprintln!("demo:   {phase:<15} {left:>7.1} MiB left {rate:>6.1} Mbit/s{alice}");
        }
        if started.elapsed() > MIGRATION_LIMIT {
            return Err(DemoError::Timeout(format!(
                "the migration of {vm} did not end within {} s",
                MIGRATION_LIMIT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
