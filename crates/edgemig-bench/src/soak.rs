//! `edgemig bench soak`: many back-and-forth migrations of one VM between
//! two sites of a testbed the soak brings up (and removes, also on error
//! or when dropped), with alice's MPTCP clients live the whole time (echo
//! probes every 10 ms and a bulk stream), the VM's memory and disk
//! verified after every migration, and, with faults, seeded random agent
//! kills, path cuts and cancels before and during the migrations. It
//! watches for the VM running at two sites every 100 ms for the whole
//! soak, counts alice's broken connections and her longest stall, and
//! checks what is left at the end. It reports what it finds; it fixes
//! nothing.

mod bed;
mod checks;
mod inject;
mod plan;
mod probe;
mod report;
mod watch;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use edgemig_api::{MigrateRequest, VmCreate};
use edgemig_guest_proto::{GuestReply, GuestRequest};
use edgemig_migration::MigrateOptions;
use edgemig_testbed::{TestbedConfig, UpOptions};

use crate::links::Cleanup;
use crate::tools::TrafficTool;
use bed::{Bed, Site};
pub use inject::FaultRecord;
pub use plan::{Fault, FaultKind, Moment, PhaseTarget, PlanLimits, plan_faults};
pub use report::{Connections, FaultCounts, Outcome, SoakReport, SoakRun};
pub use watch::{SplitBrainReport, SplitEpisode};

/// The soak's testbed: two sites joined by two 50 Mbit/s paths, alice
/// with a 10 Mbit/s access link to each.
pub const SOAK_TESTBED: &str = r#"[[site]]
name = "site-a"
vm_subnet = "10.10.0.0/24"
[[site]]
name = "site-b"
vm_subnet = "10.20.0.0/24"
[[path]]
between = ["site-a", "site-b"]
rate = "50mbit"
delay = "5ms"
[[path]]
between = ["site-a", "site-b"]
rate = "50mbit"
delay = "5ms"
[[client]]
name = "alice"
links = [ { site = "site-a", rate = "10mbit", delay = "5ms" },
          { site = "site-b", rate = "10mbit", delay = "2ms" } ]
"#;

/// The VM's name.
const VM: &str = "soak";
/// Its data disk, MiB.
const DISK_MIB: u64 = 64;
/// The memory writer's working set (MiB) and rate (MiB/s).
const MEM_WRITE: (u32, u32) = (16, 2);
/// Data written to the disk before each migration, MiB.
const DISK_WRITE_MIB: u32 = 8;
/// How long a guest request is tried again while the guest agent is not
/// ready (right after a migration).
const GUEST_RETRY: Duration = Duration::from_secs(90);
/// How long leftovers get to go away once the soak is over.
const LEAK_GRACE: Duration = Duration::from_secs(120);
/// The measuring client's node.
const CLIENT: &str = "alice";
/// How long alice's clients get, once the VM settled, to move data again
/// before they count as hung and are replaced.
const CLIENT_REVIVAL: Duration = Duration::from_secs(15);

/// Errors that end the soak before it could report (findings are not
/// errors: they are in the report).
#[derive(Debug, thiserror::Error)]
pub enum SoakError {
    /// The testbed could not be built.
    #[error("Cannot bring the soak testbed up")]
    Testbed(#[from] edgemig_testbed::TestbedError),
    /// An agent request of the set-up failed.
    #[error("Agent request failed while setting up the soak")]
    Api(#[from] edgemig_api::ClientError),
    /// Alice's clients could not start.
    #[error("Cannot start alice's clients")]
    Client(#[source] std::io::Error),
    /// The VM's service did not answer alice.
    #[error("The VM's service did not answer alice within {0:?}")]
    NoService(Duration),
    /// The config does not fit.
    #[error("{0}")]
    Config(String),
}

/// What to run.
#[derive(Debug, Clone)]
pub struct SoakOptions {
    /// Two sites joined by paths, and a client `alice` linked to both.
    pub config: TestbedConfig,
    /// Migrations, alternating between the first two sites.
    pub migrations: u32,
    /// Inject faults.
    pub faults: bool,
    /// Seed of the fault plan.
    pub seed: u64,
    /// Guest RAM, MiB.
    pub memory_mib: u64,
    /// Longest time every path is down in one cut.
    pub max_cut: Duration,
    /// Longest time a migration may take to settle (the VM at exactly one
    /// site); past it the soak stops and reports.
    pub limit: Duration,
    /// Copy the agents' and QEMU's logs here at the end (they are copied
    /// to a temporary directory anyway when something was found).
    pub logs: Option<PathBuf>,
    /// `edgemigd` binary.
    pub agent: PathBuf,
    /// `edgemig-linkemu` binary.
    pub linkemu: PathBuf,
    /// Guest image.
    pub image_dir: PathBuf,
    /// The traffic tool (`edgemig-guest`, static).
    pub tool: PathBuf,
}

fn soak_name() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "bs{}x{}",
        std::process::id() % 100_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs the soak; `on_run` gets each migration's line as it ends.
pub async fn run_soak(
    opts: &SoakOptions,
    on_run: &(dyn Fn(&SoakRun) + Sync),
) -> Result<SoakReport, SoakError> {
    let c = &opts.config;
    if c.sites.len() < 2 || c.paths.is_empty() || !c.clients.iter().any(|cl| cl.name == CLIENT) {
        return Err(SoakError::Config(format!(
            "The config needs two sites joined by paths and a client {CLIENT:?} linked to both"
        )));
    }
    let t0 = Instant::now();
    let name = soak_name();
    let state = edgemig_testbed::up(&UpOptions {
        name: name.clone(),
        config: c.clone(),
        agent: opts.agent.clone(),
        linkemu: opts.linkemu.clone(),
        image_dir: opts.image_dir.clone(),
    })
    .await?;
    let cleanup = Cleanup {
        testbed: name.clone(),
        pids: Vec::new(),
    };
    let bed = Bed::new(&state, CLIENT, opts.agent.clone()).ok_or_else(|| {
        SoakError::Config(format!(
            "The testbed lacks two sites joined by a path, or the client {CLIENT:?}"
        ))
    })?;
    let result = soak(opts, &bed, t0, on_run).await;
    drop(cleanup);
    let mut report = result?;
    report
        .leaked
        .extend(checks::leaks_after_teardown(&name, &state.dir));
    report.leaks = u32::try_from(report.leaked.len()).unwrap_or(u32::MAX);
    report.duration_s = t0.elapsed().as_secs_f64();
    Ok(report)
}

/// What the verifications after a migration found.
struct Verified {
    memory_ok: Option<bool>,
    disk_ok: Option<bool>,
    error: Option<String>,
}

async fn soak(
    opts: &SoakOptions,
    bed: &Bed,
    t0: Instant,
    on_run: &(dyn Fn(&SoakRun) + Sync),
) -> Result<SoakReport, SoakError> {
    let a = &bed.sites[0];
    let created = a
        .api
        .create_vm(&VmCreate {
            disk_mib: Some(DISK_MIB),
            ..VmCreate::builtin(VM, opts.memory_mib)
        })
        .await?;
    a.api.start_vm(VM).await?;
    a.guest.guest(VM, &GuestRequest::Hello).await?;
    a.guest
        .guest(
            VM,
            &GuestRequest::MemWrite {
                mib: MEM_WRITE.0,
                rate_mib_s: Some(MEM_WRITE.1),
            },
        )
        .await?;
    let mut disk_seed = 1u64;
    a.guest.guest(VM, &disk_write(disk_seed)).await?;
    let target = checks::service_address(&created)
        .ok_or_else(|| SoakError::Config("The VM has no address".into()))?;

    let tool = TrafficTool::new(&opts.tool);
    let reach = Duration::from_secs(60);
    let deadline = Instant::now() + reach;
    loop {
        let (t, ns) = (tool.clone(), bed.client_netns.clone());
        let probe = tokio::task::spawn_blocking(move || {
            t.client(&ns, &target.to_string(), "echo", 0.5, false)
        })
        .await;
        if matches!(probe, Ok(Ok(_))) {
            break;
        }
        if Instant::now() > deadline {
            return Err(SoakError::NoService(reach));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut echo =
        probe::Echo::start(&tool, &bed.client_netns, target).map_err(SoakError::Client)?;
    while echo.answered() == 0 {
        if Instant::now() > deadline {
            return Err(SoakError::NoService(reach));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut bulk =
        probe::Bulk::start(&opts.tool, &bed.client_netns, target).map_err(SoakError::Client)?;
    let migration = Arc::new(AtomicU32::new(0));
    let watch = watch::Watch::start(bed.watch_sites(), VM, migration.clone(), t0);

    let plan = if opts.faults {
        plan_faults(
            opts.seed,
            opts.migrations,
            PlanLimits {
                paths: bed.paths.len(),
                max_cut: opts.max_cut,
            },
        )
    } else {
        vec![Vec::new(); usize::try_from(opts.migrations).unwrap_or(0)]
    };
    let mut runs = Vec::new();
    let mut counts = FaultCounts::default();
    let mut stopped_early = None;
    let mut host = 0usize;
    for (i, faults) in plan.iter().enumerate() {
        let index = u32::try_from(i + 1).unwrap_or(u32::MAX);
        migration.store(index, Ordering::Relaxed);
        let (run, settled) =
            migrate_once(opts, bed, &echo, index, host, faults, &mut disk_seed).await;
        for f in &run.faults {
            counts.add(f);
        }
        let now_at = match run.outcome {
            Outcome::Completed => Some(1 - host),
            Outcome::RolledBack | Outcome::NotStarted => Some(host),
            Outcome::Unsettled => None,
        };
        if let Some(at) = now_at {
            keep_clients(bed, at, settled, &mut echo, &mut bulk).await;
        }
        if run.outcome == Outcome::Completed {
            host = 1 - host;
        }
        on_run(&run);
        let unsettled = run.outcome == Outcome::Unsettled;
        if unsettled {
            stopped_early = Some(format!(
                "migration {index} did not settle within {:?}: {}",
                opts.limit,
                run.error.clone().unwrap_or_default()
            ));
        }
        runs.push(run);
        if unsettled {
            break;
        }
    }

    // Leftovers get a grace period to go away (tunnels close after the
    // handoff, the destination removes what it prepared).
    let deadline = Instant::now() + LEAK_GRACE;
    let mut leaked;
    loop {
        let at = checks::settled(bed, VM).await;
        leaked = checks::leaks_before_teardown(bed, VM, at.as_ref().ok().copied()).await;
        if let (Err(seen), None) = (&at, &stopped_early) {
            leaked.push(format!("the VM is not settled at the end: {seen}"));
        }
        if leaked.is_empty() || Instant::now() > deadline || stopped_early.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    if stopped_early.is_none()
        && let Ok(at) = checks::settled(bed, VM).await
    {
        let end = Instant::now();
        keep_clients(bed, at, end, &mut echo, &mut bulk).await;
    }
    // A last per-second line of the bulk client covers the end.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let bulk_running = bulk.running();
    let since = |t: Instant| t.saturating_duration_since(t0).as_secs_f64();
    let max_stall_ms = echo.stall_ms(t0, Instant::now());
    let connections = Connections {
        echo_answered: echo.answered(),
        echo_rtt_ms: echo.rtt_ms(),
        echo_errors: echo.errors(),
        echo_hung: echo.hung,
        echo_sessions: echo.sessions(),
        echo_breaks: echo
            .breaks()
            .iter()
            .map(|(t, target)| (since(*t), target.to_string()))
            .collect(),
        bulk_errors: bulk.errors(),
        bulk_hung: bulk.hung,
        bulk_streams: bulk.streams(),
        bulk_megabits: bulk.megabits(),
        bulk_running,
        bulk_log: bulk.stderr(),
    };
    drop(bulk);
    drop(echo);
    let split = watch.finish().await;
    let count =
        |o: Outcome| u32::try_from(runs.iter().filter(|r| r.outcome == o).count()).unwrap_or(0);
    let verify_failures = runs
        .iter()
        .map(|r| u32::from(r.memory_ok == Some(false)) + u32::from(r.disk_ok == Some(false)))
        .sum();
    let mut report = SoakReport {
        migrations: u32::try_from(runs.len()).unwrap_or(u32::MAX),
        completed: count(Outcome::Completed),
        rolled_back: count(Outcome::RolledBack),
        not_started: count(Outcome::NotStarted),
        unsettled: count(Outcome::Unsettled),
        split_brain: split.episodes,
        lost_connections: connections.echo_errors
            + connections.bulk_errors
            + u64::from(connections.echo_hung)
            + u64::from(connections.bulk_hung),
        verify_failures,
        leaks: u32::try_from(leaked.len()).unwrap_or(u32::MAX),
        max_stall_ms,
        faults_injected: counts.injected(),
        faults: counts,
        faults_enabled: opts.faults,
        seed: opts.seed,
        split_brain_watch: split,
        connections,
        leaked,
        stopped_early,
        logs: None,
        duration_s: 0.0,
        runs,
        conditions: conditions(opts),
    };
    let keep = opts.logs.clone().or_else(|| {
        report
            .findings()
            .then(|| std::env::temp_dir().join(format!("edgemig-soak-{}-logs", bed.testbed)))
    });
    if let Some(dir) = keep {
        match copy_logs(bed, &dir) {
            Ok(()) => report.logs = Some(dir.display().to_string()),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "soak: cannot copy the logs")
            }
        }
    }
    Ok(report)
}

/// Makes sure alice's clients move data again after the VM settled at
/// `at` (since `since`): a client that gets nothing within
/// [`CLIENT_REVIVAL`] is replaced by one to the VM's current address (and
/// counted as hung when it saw no error).
async fn keep_clients(
    bed: &Bed,
    at: usize,
    since: Instant,
    echo: &mut probe::Echo,
    bulk: &mut probe::Bulk,
) {
    let deadline = Instant::now() + CLIENT_REVIVAL;
    while !(echo.answering_since(since) && bulk.moving_since(since)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let target = match bed.sites[at].api.vm(VM).await {
        Ok(info) => checks::service_address(&info),
        Err(_) => None,
    };
    let Some(target) = target else {
        return;
    };
    if !echo.answering_since(since)
        && let Err(e) = echo.give_up(since, target)
    {
        tracing::warn!(error = %e, "soak: cannot start a new echo session");
    }
    if !bulk.moving_since(since)
        && let Err(e) = bulk.give_up(since, target)
    {
        tracing::warn!(error = %e, "soak: cannot start a new bulk stream");
    }
}

fn disk_write(seed: u64) -> GuestRequest {
    GuestRequest::DiskWrite {
        device: None,
        mib: DISK_WRITE_MIB,
        offset_mib: 0,
        seed,
    }
}

/// One migration from `host`, with its faults (between-fault first).
async fn migrate_once(
    opts: &SoakOptions,
    bed: &Bed,
    echo: &probe::Echo,
    index: u32,
    host: usize,
    faults: &[Fault],
    disk_seed: &mut u64,
) -> (SoakRun, Instant) {
    let (from, to) = (host, 1 - host);
    let start = Instant::now();
    let mut run = SoakRun {
        index,
        id: None,
        from: bed.sites[from].name.clone(),
        to: bed.sites[to].name.clone(),
        outcome: Outcome::Unsettled,
        status: None,
        error: None,
        total_ms: None,
        downtime_ms: None,
        settle_ms: 0,
        stall_ms: 0,
        faults: Vec::new(),
        memory_ok: None,
        disk_ok: None,
        verify_error: None,
    };
    // The run until the VM settled (or the soak gave up waiting).
    let finish = |mut run: SoakRun| {
        let settled = Instant::now();
        run.settle_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
        run.stall_ms = echo.stall_ms(start, settled);
        (run, settled)
    };
    for f in faults.iter().filter(|f| f.moment == Moment::Between) {
        run.faults
            .push(inject::inject(bed, VM, *f, from, to, None).await);
        if let Err(seen) = checks::wait_settled(bed, VM, opts.limit).await {
            run.error = Some(format!("after a fault between migrations: {seen}"));
            return finish(run);
        }
    }
    let request = MigrateRequest {
        to: run.to.clone(),
        options: MigrateOptions::default(),
    };
    let id = match bed.sites[from].api.migrate(VM, &request).await {
        Ok(view) => view.id,
        Err(e) => {
            run.error = Some(format!("the migration did not start: {e}"));
            run.outcome = match checks::wait_settled(bed, VM, opts.limit).await {
                Ok(_) => Outcome::NotStarted,
                Err(seen) => {
                    run.error = Some(format!("{}; then {seen}", run.error.unwrap_or_default()));
                    Outcome::Unsettled
                }
            };
            return finish(run);
        }
    };
    run.id = Some(id.clone());
    for f in faults.iter().filter(|f| f.moment != Moment::Between) {
        run.faults
            .push(inject::inject(bed, VM, *f, from, to, Some(&id)).await);
    }
    let deadline = start + opts.limit;
    let report = loop {
        match bed.sites[from].api.migration(VM).await {
            Ok(view) if view.id == id && !view.running => break view.report,
            Ok(view) if view.id != id => break None,
            Err(e) if e.code() == Some(edgemig_api::ErrorCode::NotFound) => break None,
            _ => {}
        }
        if Instant::now() > deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    if let Some(r) = &report {
        run.status = Some(r.status);
        run.error = r.error.clone();
        run.total_ms = Some(r.total_ms);
        run.downtime_ms = r.downtime_ms;
    }
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_secs(30));
    match checks::wait_settled(bed, VM, left).await {
        Ok(at) => {
            run.outcome = if at == to {
                Outcome::Completed
            } else {
                Outcome::RolledBack
            };
            let (mut run, settled) = finish(run);
            let v = verify(&bed.sites[at], disk_seed).await;
            run.memory_ok = v.memory_ok;
            run.disk_ok = v.disk_ok;
            run.verify_error = v.error;
            (run, settled)
        }
        Err(seen) => {
            run.error = Some(match run.error.take() {
                Some(e) => format!("{e}; not settled: {seen}"),
                None => format!("not settled: {seen}"),
            });
            finish(run)
        }
    }
}

/// A guest request, tried again while the guest agent is not ready.
async fn guest(site: &Site, request: &GuestRequest) -> Result<GuestReply, String> {
    let deadline = Instant::now() + GUEST_RETRY;
    loop {
        match site.guest.guest(VM, request).await {
            Ok(reply) => return Ok(reply),
            Err(e) if Instant::now() > deadline => return Err(e.to_string()),
            Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}

/// Verifies the memory writer's pages and the disk data of `disk_seed`,
/// then writes the disk anew with the next seed.
async fn verify(site: &Site, disk_seed: &mut u64) -> Verified {
    let mut errors = Vec::new();
    let pages = u64::from(MEM_WRITE.0) * 256;
    let memory_ok = match guest(site, &GuestRequest::MemVerify).await {
        Ok(GuestReply::MemVerify(r)) if r.bad_pages == 0 && r.pages == pages => Some(true),
        Ok(GuestReply::MemVerify(r)) => {
            errors.push(format!(
                "memory: {} bad pages of {} (expected {pages}), first {:?}",
                r.bad_pages, r.pages, r.first_bad_page
            ));
            Some(false)
        }
        Ok(other) => {
            errors.push(format!("memory: unexpected reply {other:?}"));
            Some(false)
        }
        Err(e) => {
            errors.push(format!("memory verification failed: {e}"));
            Some(false)
        }
    };
    let request = GuestRequest::DiskVerify {
        device: None,
        mib: DISK_WRITE_MIB,
        offset_mib: 0,
        seed: *disk_seed,
    };
    let disk_ok = match guest(site, &request).await {
        Ok(GuestReply::Disk(r)) if r.ok => Some(true),
        Ok(GuestReply::Disk(r)) => {
            errors.push(format!(
                "disk: {} bad 4 KiB blocks (seed {disk_seed})",
                r.bad_blocks
            ));
            Some(false)
        }
        Ok(other) => {
            errors.push(format!("disk: unexpected reply {other:?}"));
            Some(false)
        }
        Err(e) => {
            errors.push(format!("disk verification failed: {e}"));
            Some(false)
        }
    };
    match guest(site, &disk_write(*disk_seed + 1)).await {
        Ok(GuestReply::Disk(_)) => *disk_seed += 1,
        Ok(other) => errors.push(format!("disk write: unexpected reply {other:?}")),
        Err(e) => errors.push(format!("disk write failed: {e}")),
    }
    Verified {
        memory_ok,
        disk_ok,
        error: (!errors.is_empty()).then(|| errors.join("; ")),
    }
}

fn conditions(opts: &SoakOptions) -> String {
    let paths: Vec<String> = opts
        .config
        .paths
        .iter()
        .map(|p| format!("{} {}", p.shape.rate, p.shape.delay))
        .collect();
    format!(
        "{} migrations back and forth between two sites (paths {}); a {} MiB TCG guest with a {DISK_MIB} MiB data disk, its memory writer dirtying {} MiB at {} MiB/s, {DISK_WRITE_MIB} MiB written to the disk before each migration and both verified after it; alice's MPTCP echo probes every {} ms and a bulk stream; {}",
        opts.migrations,
        paths.join(" + "),
        opts.memory_mib,
        MEM_WRITE.0,
        MEM_WRITE.1,
        probe::PROBE_INTERVAL_MS,
        if opts.faults {
            format!(
                "faults with seed {}: each migration one while it runs, one in three another before it (agent SIGKILL and restart, one path or every path cut for up to {} s, cancel)",
                opts.seed,
                opts.max_cut.as_secs()
            )
        } else {
            "no faults".into()
        }
    )
}

/// Copies each site's agent log and the VM's QEMU and serial logs to `dir`.
fn copy_logs(bed: &Bed, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for site in &bed.sites {
        std::fs::copy(&site.log, dir.join(format!("{}-edgemigd.log", site.name)))?;
        let vm = site.state_dir.join("vms").join(VM);
        for f in ["qemu.log", "serial.log"] {
            if vm.join(f).is_file() {
                std::fs::copy(vm.join(f), dir.join(format!("{}-{f}", site.name)))?;
            }
        }
    }
    Ok(())
}
