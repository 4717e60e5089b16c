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
mod progress;
mod summary;
mod vm;
mod watch;

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use edgemig_api::{ApiClient, MigrateRequest, PolicySpec};
use edgemig_migration::{MigrateOptions, MigrationReport, Transport};
use edgemig_policy::FollowPolicy;
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
const VM: &str = "alice-web";
/// The image's name in the sites' caches.
const IMAGE: &str = "debian12";
/// The file nginx serves, its size and seed.
const FILE: &str = "/var/www/html/demo.bin";
const FILE_MIB: u32 = 16;
const FILE_SEED: u64 = 2017;
/// alice's link to site-a after her commute.
const FAR_RATE_MBIT: f64 = 10.0;
const FAR: (&str, &str) = ("10mbit", "40ms");
/// How long alice's download must be able to last at her far rate: the
/// time before the move plus the longest migration and handoff expected
/// under TCG on a busy machine; after the move it runs much faster.
const DOWNLOAD_BUDGET_S: f64 = 100.0;
/// Handshakes timed per RTT figure.
const RTT_TRIES: usize = 5;

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

    say(
        live,
        &format!(
            "importing the Debian 12 image ({}) at site-a; pushing it to site-b while alice's VM boots",
            opts.packages.join(", ")
        ),
    );
    let imported = a
        .import_image(&edgemig_api::ImageImport {
            path: opts.debian_image.display().to_string(),
            name: Some(IMAGE.into()),
            firmware: None,
        })
        .await?;
    let (push, boot) = tokio::try_join!(
        vm::push_image(&a, IMAGE),
        vm::boot(&a, VM, IMAGE, opts.memory_mib)
    )?;
    say(
        live,
        &format!(
            "image at site-b: {:.0} MiB sent in {:.1} s; VM booted through GRUB and systemd in {:.1} s",
            push.wire_bytes as f64 / 1_048_576.0,
            push.total_ms as f64 / 1000.0,
            boot.as_secs_f64()
        ),
    );
    let mechanism = vm::mptcp_nginx(&a, VM).await?;
    let checksum = vm::write_file(&a, VM, FILE, FILE_MIB, FILE_SEED).await?;
    let created = a.vm(VM).await?;
    let old_ip = created
        .nics
        .first()
        .and_then(|n| n.address.as_deref())
        .map(ip_of)
        .unwrap_or_default();
    let url = format!("http://{old_ip}/demo.bin");
    let ready = Instant::now();
    while !curl::reachable(&alice, &url) {
        if ready.elapsed() > Duration::from_secs(60) {
            return Err(DemoError::Timeout(format!(
                "nginx did not answer alice at {url}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    say(
        live,
        &format!(
            "nginx serves {FILE} ({FILE_MIB} MiB) over MPTCP ({mechanism}) at {old_ip}; alice commutes: her link to site-a becomes {}, {} one way",
            FAR.0, FAR.1
        ),
    );
    if let Some(l) = state.links.iter().find(|l| l.name == "alice-site-a") {
        edgemig_testbed::control::request(&l.control, &json!({"rate": FAR.0, "delay": FAR.1}))?;
    }
    let rtt_before = curl::handshake_rtt_ms(&alice, &format!("http://{old_ip}/"), RTT_TRIES)?;

    let copy_bytes = u64::from(FILE_MIB) << 20;
    let budget = FAR_RATE_MBIT * 1e6 / 8.0 * (DOWNLOAD_BUDGET_S + opts.seconds);
    let copies = (budget / copy_bytes as f64).ceil().max(2.0) as u32;
    let download_unix_ms = unix_ms();
    let mut download = Download::start(&alice, &url, copies, copy_bytes)?;
    say(
        live,
        &format!(
            "alice: mptcpize run curl {url} ({copies} copies over one connection); handshake RTT {rtt_before:.1} ms"
        ),
    );
    let before_s = opts.seconds.max(1.0) + 1.0;
    tokio::time::sleep(Duration::from_secs_f64(before_s)).await;

    say(live, "setting the VM's policy: follow its clients");
    let policy = FollowPolicy {
        hold_ms: 3_000,
        ..FollowPolicy::default()
    };
    a.set_policy(VM, &PolicySpec::Follow(policy)).await?;
    let decided = Instant::now();
    let view = loop {
        if let Ok(v) = a.migration(VM).await {
            break v;
        }
        if decided.elapsed() > Duration::from_secs(120) || !download.running() {
            let why = a
                .vm(VM)
                .await
                .ok()
                .and_then(|v| v.policy)
                .map(|p| format!("{}: {}", p.status, p.explanation.unwrap_or_default()))
                .unwrap_or_default();
            return Err(DemoError::Timeout(format!(
                "the follow policy did not move the VM while alice downloaded ({why})"
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let decided_ms = ms(decided.elapsed());
    let explanation = a
        .vm(VM)
        .await
        .ok()
        .and_then(|v| v.policy)
        .and_then(|p| p.explanation)
        .unwrap_or_default()
        .replace('\n', "; ");
    say(
        live,
        &format!(
            "follow policy, after {:.1} s: {explanation}; migrating to {}",
            decided_ms as f64 / 1000.0,
            view.to
        ),
    );
    let report = watch::until_done(&a, VM, live, Some(&download)).await?;
    let ended_ms = download.now_ms();
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
    let after_from = ended_ms + 500;
    say(
        live,
        "alice's download carries on from the near site until it is done",
    );
    let done = download.finish(Duration::from_secs(600));
    let rtt_after = curl::handshake_rtt_ms(&alice, &format!("http://{new_ip}/"), RTT_TRIES).ok();

    let moved_from = report.started_at.saturating_sub(download_unix_ms);
    let last = done.arrivals.last().map_or(0, |a| a.at_ms);
    let stall_to = ended_ms + 1000;
    let spanned = last >= stall_to && done.arrivals.first().is_some_and(|a| a.at_ms < moved_from);
    let gaps = progress::gaps_between(
        &done.arrivals,
        moved_from,
        stall_to.min(last.max(moved_from + RESOLUTION_MS)),
    );
    let verified = done.checksums.iter().filter(|c| **c == checksum).count();
    let connections: u32 = done.transfers.iter().map(|t| t.connects).sum();
    let all_ok = done.transfers.len() == copies as usize
        && done
            .transfers
            .iter()
            .all(|t| t.http_code == 200 && t.size == copy_bytes);
    let session = Session {
        client: "mptcpize run curl".into(),
        url,
        copies,
        copy_bytes,
        bytes: done.bytes,
        exit_code: done.exit_code,
        verified_copies: u32::try_from(verified).unwrap_or(u32::MAX),
        connections,
        spanned,
        alive: done.exit_code == Some(0)
            && verified == copies as usize
            && all_ok
            && connections == 1
            && spanned,
        errors: done.errors.clone(),
    };
    let window = |from: u64, to: u64| {
        let to = to.min(last);
        (to >= from + 200)
            .then(|| progress::mbit_between(&done.arrivals, from, to))
            .flatten()
    };
    let at_b = b
        .vm(VM)
        .await
        .is_ok_and(|v| v.state == edgemig_api::VmState::Running);
    let mut summary = DemoSummary {
        vm: VM.into(),
        vm_site: if at_b { "site-b" } else { "site-a" }.into(),
        image: DemoImage {
            name: IMAGE.into(),
            digest: imported.digest.clone(),
            packages: opts.packages.clone(),
            file_bytes: imported.file_bytes,
            push_wire_bytes: push.wire_bytes,
            push_ms: push.total_ms,
        },
        boot_ms: ms(boot),
        mptcp_apps: mechanism,
        trigger: Trigger {
            by: "follow".into(),
            explanation,
            decided_ms,
        },
        session,
        address: Address {
            old: old_ip,
            new: new_ip,
            subflows_to_new,
            subflows_to_old,
        },
        before: Measure {
            rtt_ms: Some(rtt_before),
            mbit: window(1000, moved_from),
        },
        during: Measure {
            rtt_ms: None,
            mbit: window(moved_from, ended_ms),
        },
        after: Measure {
            rtt_ms: rtt_after,
            mbit: window(after_from, last),
        },
        stall: gaps.map(|g| g.stall()).unwrap_or_default(),
        stall_at_ms: gaps.map_or(0, |g| g.max_at_ms),
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
