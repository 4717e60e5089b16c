//! `edgemig demo`: the paper's story with a real Debian guest. Alice
//! downloads from nginx in her Debian 12 VM at the far site with a stock
//! client (`mptcpize run curl`); she commutes (her link to site-a gets
//! slower and farther), the VM's follow policy moves it to site-b over both
//! inter-site paths (only the root disk's overlay travels: the image was
//! pushed there beforehand), the guest announces its new address, and her
//! download carries on over the same connection, faster. Everything
//! printed is measured in the run: her RTT and throughput before and
//! after, the migration's phases and the VM's downtime, the stall her
//! download saw (10 ms resolution), and with `baseline` the same VM moved
//! back over one TCP path.

mod curl;
mod outcome;
mod progress;
mod summary;
mod vm;
mod watch;

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use edgemig_api::{ApiClient, MigrateRequest, PolicySpec};
use edgemig_migration::{MigrateOptions, MigrationReport, Transport};
use edgemig_testbed::{TestbedConfig, UpOptions};
use serde_json::json;

use crate::links::Cleanup;
use curl::Download;
pub use progress::RESOLUTION_MS;
pub use summary::{Address, Baseline, DemoImage, DemoSummary, Measure, Session, Trigger};

/// Errors of the demo.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The testbed could not be built.
    #[error("Cannot bring the demo testbed up")]
    Testbed(#[from] edgemig_testbed::TestbedError),
    /// An agent request failed.
    #[error("Agent request failed")]
    Api(#[from] edgemig_api::ClientError),
    /// Alice's client failed.
    #[error("Alice's client failed")]
    Curl(#[from] curl::CurlError),
    /// The guest answered something else than asked.
    #[error("The guest agent did not do it: {0}")]
    Guest(String),
    /// The migration failed.
    #[error("The migration did not complete: {0}")]
    Migration(String),
    /// Something did not happen in time.
    #[error("Timed out: {0}")]
    Timeout(String),
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
    /// Seconds alice downloads before the VM's policy is set (at least 1).
    pub seconds: f64,
    /// Guest RAM in MiB.
    pub memory_mib: u64,
    /// `edgemigd` binary.
    pub agent: PathBuf,
    /// `edgemig-linkemu` binary.
    pub linkemu: PathBuf,
    /// The sites' built-in guest image (kernel + initramfs directory).
    pub image_dir: PathBuf,
    /// The Debian 12 qcow2 image alice's VM boots (with nginx-light and
    /// the guest agent).
    pub debian_image: PathBuf,
    /// The Debian packages it was built with (shown in the summary).
    pub packages: Vec<String>,
    /// Also move the VM back over one TCP path and compare.
    pub baseline: bool,
    /// Print progress lines while it runs.
    pub live: bool,
}

/// alice's VM.
pub(crate) const VM: &str = "alice-web";
/// The image's name in the sites' caches.
pub(crate) const IMAGE: &str = "debian12";
/// The file nginx serves, its size and seed.
pub(crate) const FILE: &str = "/var/www/html/demo.bin";
pub(crate) const FILE_MIB: u32 = 16;
pub(crate) const FILE_SEED: u64 = 2017;
/// alice's link to site-a after her commute.
const FAR_RATE_MBIT: f64 = 10.0;
const FAR: (&str, &str) = ("10mbit", "40ms");
/// How long alice's download must be able to last at her far rate: the
/// time before the move plus the longest migration and handoff expected
/// under TCG on a busy machine; after the move it runs much faster.
const DOWNLOAD_BUDGET_S: f64 = 100.0;
/// Handshakes timed per RTT figure.
const RTT_TRIES: usize = 5;
/// The follow policy's hold: how long site-b must stay better.
const HOLD_MS: u64 = 3_000;
/// Longest wait for alice's download after the move.
const DOWNLOAD_LIMIT: Duration = Duration::from_secs(600);

pub(crate) fn say(live: bool, text: &str) {
    if live {
        eprintln!("demo: {text}");
    }
}

/// Runs the demo.
pub async fn run_demo(opts: &DemoOptions) -> Result<DemoSummary, DemoError> {
    let config = TestbedConfig::default_config();
    say(
        opts.live,
        "building the edge testbed: site-a, site-b, two 50 Mbit/s paths, alice (far from site-a, near site-b)",
    );
    let state = edgemig_testbed::up(&UpOptions {
        name: opts.name.clone(),
        config,
        agent: opts.agent.clone(),
        linkemu: opts.linkemu.clone(),
        image_dir: opts.image_dir.clone(),
    })
    .await?;
    let cleanup = Cleanup {
        testbed: opts.name.clone(),
        pids: Vec::new(),
    };
    let result = story(opts, &state).await;
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

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn ip_of(address: &str) -> String {
    address.split('/').next().unwrap_or_default().to_string()
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

async fn story(
    opts: &DemoOptions,
    state: &edgemig_testbed::TestbedState,
) -> Result<DemoSummary, DemoError> {
    let site = |name: &str| {
        let s = state.sites.iter().find(|s| s.name == name);
        ApiClient::new(s.map(|s| s.api_socket.clone()).unwrap_or_default())
            .with_timeout(Duration::from_secs(600))
    };
    let (a, b) = (site("site-a"), site("site-b"));
    let alice = state.netns_of("alice").unwrap_or_default().to_string();
    let live = opts.live;

    let vm = vm::prepare(&a, &alice, opts).await?;
    let old_ip = vm.ip.clone();
    say(
        live,
        &format!(
            "nginx serves {FILE} ({FILE_MIB} MiB) over MPTCP ({}) at {old_ip}; alice commutes: her link to site-a becomes {}, {} one way",
            vm.mechanism, FAR.0, FAR.1
        ),
    );
    if let Some(l) = state.links.iter().find(|l| l.name == "alice-site-a") {
        edgemig_testbed::control::request(&l.control, &json!({"rate": FAR.0, "delay": FAR.1}))?;
    }
    let rtt_before = curl::handshake_rtt_ms(&alice, &format!("http://{old_ip}/"), RTT_TRIES)?;

    let budget = FAR_RATE_MBIT * 1e6 / 8.0 * (DOWNLOAD_BUDGET_S + opts.seconds);
    let asked = outcome::Asked {
        client: "mptcpize run curl".into(),
        url: format!("http://{old_ip}/demo.bin"),
        copies: (budget / f64::from(FILE_MIB << 20)).ceil().max(2.0) as u32,
        copy_bytes: u64::from(FILE_MIB) << 20,
        checksum: vm.checksum,
    };
    let download_unix_ms = unix_ms();
    let mut download = Download::start(&alice, &asked.url, asked.copies, asked.copy_bytes)?;
    say(
        live,
        &format!(
            "alice: {} {} ({} copies over one connection); handshake RTT {rtt_before:.1} ms",
            asked.client, asked.url, asked.copies
        ),
    );
    tokio::time::sleep(Duration::from_secs_f64(opts.seconds.max(1.0) + 1.0)).await;

    say(live, "setting the VM's policy: follow its clients");
    let started = watch::follow(&a, VM, HOLD_MS, &mut download).await?;
    say(
        live,
        &format!(
            "follow policy, after {:.1} s: {}; migrating to {}",
            started.decided_ms as f64 / 1000.0,
            started.explanation,
            started.to
        ),
    );
    let report = watch::until_done(&a, VM, live, Some(&download)).await?;
    let moved_to_ms = download.now_ms();
    let network = report
        .network
        .clone()
        .ok_or_else(|| DemoError::Migration("the report has no network handoff".into()))?;
    let new_ip = ip_of(&network.new_address);
    let subflows_to_new = curl::established_to(&alice, &new_ip)?;
    let subflows_to_old = curl::established_to(&alice, &old_ip)?;
    say(
        live,
        &format!(
            "moved in {:.1} s (downtime {} ms); address {old_ip} -> {new_ip}; alice's subflows: {subflows_to_new} to the new address, {subflows_to_old} to the old",
            report.total_ms as f64 / 1000.0,
            report.downtime_ms.unwrap_or(0)
        ),
    );
    say(
        live,
        "alice's download carries on from the near site until it is done",
    );
    let deadline = Instant::now() + DOWNLOAD_LIMIT;
    while download.running() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let done = download.finish(Duration::ZERO);
    let rtt_after = curl::handshake_rtt_ms(&alice, &format!("http://{new_ip}/"), RTT_TRIES).ok();
    let judged = outcome::judge(
        &done,
        &asked,
        outcome::Timeline {
            moved_from_ms: report.started_at.saturating_sub(download_unix_ms),
            moved_to_ms,
        },
    );
    let at_b = b
        .vm(VM)
        .await
        .is_ok_and(|v| v.state == edgemig_api::VmState::Running);
    let mut summary = DemoSummary {
        vm: VM.into(),
        vm_site: if at_b { "site-b" } else { "site-a" }.into(),
        image: DemoImage {
            name: IMAGE.into(),
            digest: vm.imported.digest.clone(),
            packages: opts.packages.clone(),
            file_bytes: vm.imported.file_bytes,
            push_wire_bytes: vm.push.wire_bytes,
            push_ms: vm.push.total_ms,
        },
        boot_ms: ms(vm.boot),
        mptcp_apps: vm.mechanism,
        trigger: Trigger {
            by: "follow".into(),
            explanation: started.explanation,
            decided_ms: started.decided_ms,
        },
        session: judged.session,
        address: Address {
            old: old_ip,
            new: new_ip,
            subflows_to_new,
            subflows_to_old,
        },
        before: Measure {
            rtt_ms: Some(rtt_before),
            mbit: judged.rates.before,
        },
        during: Measure {
            rtt_ms: None,
            mbit: judged.rates.during,
        },
        after: Measure {
            rtt_ms: rtt_after,
            mbit: judged.rates.after,
        },
        stall: judged.stall,
        stall_at_ms: judged.stall_at_ms,
        migration: report,
        baseline: None,
    };
    if opts.baseline && at_b {
        summary.baseline = Some(baseline(&b, live, &summary.migration).await?);
    }
    Ok(summary)
}

/// Moves the VM back to site-a over one TCP path (plain QEMU's way), the
/// follow policy switched off first so it does not move it again.
async fn baseline(
    b: &ApiClient,
    live: bool,
    mptcp: &MigrationReport,
) -> Result<Baseline, DemoError> {
    say(
        live,
        "baseline: moving the VM back to site-a over one TCP path (--transport tcp), the VM idle",
    );
    b.set_policy(VM, &PolicySpec::None).await?;
    b.migrate(
        VM,
        &MigrateRequest {
            to: "site-a".into(),
            options: MigrateOptions {
                transport: Transport::Tcp,
                ..MigrateOptions::default()
            },
        },
    )
    .await?;
    let report = watch::until_done(b, VM, live, None).await?;
    let ratio = report.total_ms as f64 / mptcp.total_ms.max(1) as f64;
    let copy_ratio = summary::copy_ms(&report)
        .zip(summary::copy_ms(mptcp))
        .map(|(tcp, mp)| tcp as f64 / mp.max(1) as f64);
    Ok(Baseline {
        migration: report,
        ratio,
        copy_ratio,
    })
}
