//! Migrating one guest with several systems in turn on one testbed: the
//! systems under test (plain QEMU, multifd over one TCP path, edgemig over
//! MPTCP...), the order they run in (reversed every other repetition, so no
//! system always comes first), and, for the runs asked for, a client's echo
//! session watching the VM during the migration (its stall). The guest is
//! the built-in one or a VM booting a root image cached at both sites.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use edgemig_api::{ApiClient, ImageImport, MigrateRequest, VmCreate};
use edgemig_guest_proto::{GuestRequest, SERVICE_PORT};
use edgemig_migration::{
    Compression, MigrateOptions, MigrationReport, PostcopyPolicy, ReportStatus, Transport,
};
use edgemig_testbed::{TestbedConfig, UpOptions};

use crate::base_image::{BaseImageSpec, write_base_image};
use crate::links::Cleanup;
use crate::migrate::{DiskSetup, MigrateBenchError};
use crate::session::{Session, Stall};
use crate::tools::TrafficTool;

/// How long a watching session may take to get its first answer.
const SESSION_READY: Duration = Duration::from_secs(10);

/// How long after a migration the session's lines are awaited (a line
/// covers the second before it).
const SESSION_DRAIN: Duration = Duration::from_millis(1200);

/// The binaries and guest image a benchmark testbed needs.
#[derive(Debug, Clone)]
pub(crate) struct Binaries {
    /// `edgemigd` binary.
    pub agent: PathBuf,
    /// `edgemig-linkemu` binary.
    pub linkemu: PathBuf,
    /// Guest image.
    pub image_dir: PathBuf,
}

/// What the migrated guest holds and does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Workload {
    /// Guest RAM in MiB.
    pub memory_mib: u64,
    /// Mixed data held in guest memory, MiB (0 for none).
    pub fill_mib: u32,
    /// Memory writer: working set (MiB) and dirty rate (MiB/s, `None` for
    /// as fast as it can); started after the fill.
    pub mem_write: Option<(u32, Option<u32>)>,
    /// A data disk.
    pub disk: Option<DiskSetup>,
}

/// The migrated guest: what it holds and does, and what it boots.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Guest<'a> {
    /// What it holds and does.
    pub workload: &'a Workload,
    /// A disk image it boots (imported at both sites, so that only the
    /// root disk's overlay travels); `None`: the built-in guest.
    pub root_image: Option<&'a Path>,
}

/// Cache name of the root image at both sites.
const ROOT_IMAGE_NAME: &str = "bench-root";

/// Longest wait for the guest agent of a VM booting a root image (a
/// Debian image boots in 25–85 s under TCG on a busy 2-core machine).
const BOOT_LIMIT: Duration = Duration::from_secs(300);

/// The data disk in a guest booting a root image: the root disk is the
/// first virtio-blk device (`/dev/vda`), the data disk the second.
const DATA_DISK_AFTER_ROOT: &str = "/dev/vdb";

/// One system under test: how a migration is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct System {
    /// Its name in reports (`baseline`, `multifd_tcp`, `best_single_path`,
    /// `mptcp`, `auto`).
    pub label: &'static str,
    /// Transport.
    pub transport: Transport,
    /// Compression request.
    pub compression: Compression,
    /// Postcopy policy.
    pub postcopy: PostcopyPolicy,
    /// multifd channels (`None`: the transport's default).
    pub multifd: Option<u8>,
}

impl System {
    /// Plain QEMU: one TCP connection, no multifd, no compression.
    pub const BASELINE: Self = Self {
        label: "baseline",
        transport: Transport::Tcp,
        compression: Compression::None,
        postcopy: PostcopyPolicy::Never,
        multifd: None,
    };
    /// QEMU with multifd (4 channels) over one TCP path, no compression:
    /// separates multifd's gain from MPTCP's.
    pub const MULTIFD_TCP: Self = Self {
        label: "multifd_tcp",
        transport: Transport::Tcp,
        compression: Compression::None,
        postcopy: PostcopyPolicy::Never,
        multifd: Some(4),
    };
    /// QEMU's best single-path setup: multifd (4 channels) + zstd (level
    /// from the planner's model for the one path's rate) over one TCP path,
    /// what `virsh migrate --parallel --compressed` gives.
    pub const BEST_SINGLE_PATH: Self = Self {
        label: "best_single_path",
        transport: Transport::Tcp,
        compression: Compression::Zstd { level: None },
        postcopy: PostcopyPolicy::Never,
        multifd: Some(4),
    };
    /// edgemig over MPTCP without compression.
    pub const MPTCP: Self = Self {
        label: "mptcp",
        transport: Transport::Mptcp,
        compression: Compression::None,
        postcopy: PostcopyPolicy::Never,
        multifd: None,
    };
    /// edgemig over MPTCP with `--compression auto`.
    pub const AUTO: Self = Self {
        label: "auto",
        transport: Transport::Mptcp,
        compression: Compression::Auto,
        postcopy: PostcopyPolicy::Never,
        multifd: None,
    };

    /// The migration options of this system.
    pub fn options(&self) -> MigrateOptions {
        MigrateOptions {
            transport: self.transport,
            compression: self.compression,
            postcopy: self.postcopy,
            multifd: self.multifd,
            ..MigrateOptions::default()
        }
    }
}

/// `systems` `repeat` times, every other repetition in reverse order
/// (`a b c`, `c b a`, `a b c`, ...: ABBA counterbalancing), so that no
/// system always runs first, each system's mean position is the same over
/// two repetitions, and, as the VM goes back and forth, each system
/// migrates in both directions (with an odd number of systems, a system's
/// direction flips from one repetition to the next).
pub(crate) fn counterbalanced(systems: &[System], repeat: u32) -> Vec<System> {
    (0..repeat)
        .flat_map(|r| {
            let mut order = systems.to_vec();
            if r % 2 == 1 {
                order.reverse();
            }
            order
        })
        .collect()
}

/// A client watching the VM through the migrations of some systems.
#[derive(Debug, Clone)]
pub(crate) struct ClientWatch {
    /// The traffic tool (`edgemig-guest`).
    pub tool: PathBuf,
    /// Labels of the systems whose migrations are watched.
    pub labels: Vec<&'static str>,
}

/// One migration of the run.
#[derive(Debug, Clone)]
pub(crate) struct SystemRun {
    /// The system's label.
    pub label: &'static str,
    /// Its report.
    pub report: MigrationReport,
    /// The watching client's stall from the migration request to its
    /// report (`None` when not watched or the session could not start).
    pub stall: Option<Stall>,
    /// The watching client's connection errors in that time.
    pub client_errors: Option<u64>,
}

struct Bed {
    sites: [ApiClient; 2],
    names: [String; 2],
}

/// Brings up testbed `name` on `config`, starts a guest with `workload` at
/// the first site, and migrates it once per entry of `systems`, in order,
/// back and forth between the first two sites (a migration that does not
/// complete leaves the VM where it was). Every migration is cancelled after
/// `limit`. With `watch`, the config's first client runs an echo session to
/// the VM (its current address, port [`SERVICE_PORT`]) through each
/// watched migration. The testbed is removed however this ends (dropping
/// the future included).
pub(crate) async fn run_systems(
    name: &str,
    config: &TestbedConfig,
    binaries: &Binaries,
    workload: &Workload,
    systems: &[System],
    limit: Duration,
    watch: Option<&ClientWatch>,
) -> Result<Vec<SystemRun>, MigrateBenchError> {
    let guest = Guest {
        workload,
        root_image: None,
    };
    run_systems_booting(name, config, binaries, guest, systems, limit, watch).await
}

/// [`run_systems`] with the guest booting `guest.root_image` when set.
pub(crate) async fn run_systems_booting(
    name: &str,
    config: &TestbedConfig,
    binaries: &Binaries,
    guest: Guest<'_>,
    systems: &[System],
    limit: Duration,
    watch: Option<&ClientWatch>,
) -> Result<Vec<SystemRun>, MigrateBenchError> {
    let workload = guest.workload;
    if config.sites.len() < 2 || config.paths.is_empty() {
        return Err(MigrateBenchError::Config(
            "The config needs two sites joined by paths".into(),
        ));
    }
    let state = edgemig_testbed::up(&UpOptions {
        name: name.to_string(),
        config: config.clone(),
        agent: binaries.agent.clone(),
        linkemu: binaries.linkemu.clone(),
        image_dir: binaries.image_dir.clone(),
    })
    .await?;
    let _cleanup = Cleanup {
        testbed: name.to_string(),
        pids: Vec::new(),
    };
    let bed = Bed {
        sites: [
            ApiClient::new(&state.sites[0].api_socket).with_timeout(Duration::from_secs(900)),
            ApiClient::new(&state.sites[1].api_socket).with_timeout(Duration::from_secs(900)),
        ],
        names: [state.sites[0].name.clone(), state.sites[1].name.clone()],
    };
    let vm = "bench";
    let disk = workload.disk;
    let base_image = match disk {
        Some(d) if d.base_mib > 0 => Some(import_base(&bed, &d).await?),
        _ => None,
    };
    let image = match guest.root_image {
        Some(path) => Some(import_root(&bed, path).await?),
        None => None,
    };
    let booting = image.is_some();
    let created = bed.sites[0]
        .create_vm(&VmCreate {
            disk_mib: disk.map(|d| d.disk_mib),
            base_image,
            image,
            ..VmCreate::builtin(vm, workload.memory_mib)
        })
        .await?;
    let mut address = created
        .nics
        .first()
        .and_then(|n| n.address.as_deref())
        .map(strip_prefix);
    bed.sites[0].start_vm(vm).await?;
    if booting {
        wait_for_agent(&bed.sites[0], vm).await?;
    } else {
        bed.sites[0].guest(vm, &GuestRequest::Hello).await?;
    }
    let data_disk = booting.then_some(DATA_DISK_AFTER_ROOT);
    prepare_guest(&bed, vm, workload, data_disk).await?;
    let watcher = watch.and_then(|w| {
        let client = config.clients.first()?;
        let netns = state.netns_of(&client.name)?.to_string();
        Some((w, TrafficTool::new(&w.tool), netns))
    });
    let mut at = 0usize;
    let mut runs = Vec::new();
    for system in systems {
        let (from, to) = (at, 1 - at);
        let session = match (&watcher, &address) {
            (Some((w, tool, netns)), Some(addr)) if w.labels.contains(&system.label) => {
                watch_session(tool, netns, &format!("{addr}:{SERVICE_PORT}")).await
            }
            _ => None,
        };
        let started = Instant::now();
        let report = migrate_once(&bed, from, to, vm, system.options(), limit).await?;
        let ended = Instant::now();
        let (stall, client_errors) = match session {
            Some(session) => {
                tokio::time::sleep(SESSION_DRAIN).await;
                (
                    Some(session.stall_between(started, ended)),
                    Some(session.errors()),
                )
            }
            None => (None, None),
        };
        tracing::info!(testbed = name, system = system.label, status = ?report.status, total_ms = report.total_ms, stall_ms = ?stall.map(|s| s.max_ms), "benchmark run");
        if report.status == ReportStatus::Completed {
            at = to;
            if let Some(n) = report
                .network
                .as_ref()
                .filter(|n| n.handoff == "done" || n.handoff == "timeout")
            {
                address = Some(strip_prefix(&n.new_address));
            }
        }
        runs.push(SystemRun {
            label: system.label,
            report,
            stall,
            client_errors,
        });
    }
    Ok(runs)
}

/// `10.0.0.5/24` → `10.0.0.5`.
fn strip_prefix(address: &str) -> String {
    address.split('/').next().unwrap_or_default().to_string()
}

/// Waits (up to [`BOOT_LIMIT`]) until the guest agent of `vm`, just
/// started, answers.
async fn wait_for_agent(site: &ApiClient, vm: &str) -> Result<(), MigrateBenchError> {
    let started = Instant::now();
    loop {
        match site.guest(vm, &GuestRequest::Hello).await {
            Ok(_) => {
                tracing::info!(
                    vm,
                    boot_ms = started.elapsed().as_millis() as u64,
                    "benchmark VM booted"
                );
                return Ok(());
            }
            Err(_) if started.elapsed() < BOOT_LIMIT => {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(_) => return Err(MigrateBenchError::Boot(BOOT_LIMIT)),
        }
    }
}

/// Imports the root image at both sites (the same digest: a migration
/// then mirrors only the overlay); returns its digest.
async fn import_root(bed: &Bed, path: &Path) -> Result<String, MigrateBenchError> {
    let import = ImageImport {
        path: path.display().to_string(),
        name: Some(ROOT_IMAGE_NAME.into()),
        firmware: None,
    };
    let (a, b) = tokio::try_join!(
        bed.sites[0].import_image(&import),
        bed.sites[1].import_image(&import)
    )?;
    if a.digest != b.digest {
        return Err(MigrateBenchError::Config(format!(
            "The sites imported {} as different images ({} and {})",
            path.display(),
            a.digest,
            b.digest
        )));
    }
    Ok(a.digest)
}

/// Fills the guest's memory, starts its writer and writes its disk
/// (`data_disk`, or the guest agent's default device) as the workload says.
async fn prepare_guest(
    bed: &Bed,
    vm: &str,
    workload: &Workload,
    data_disk: Option<&str>,
) -> Result<(), MigrateBenchError> {
    if workload.fill_mib > 0 {
        bed.sites[0]
            .guest(
                vm,
                &GuestRequest::MemFill {
                    mib: workload.fill_mib,
                },
            )
            .await?;
    }
    if let Some((mib, rate_mib_s)) = workload.mem_write {
        bed.sites[0]
            .guest(vm, &GuestRequest::MemWrite { mib, rate_mib_s })
            .await?;
    }
    if let Some(d) = workload.disk {
        bed.sites[0]
            .guest(
                vm,
                &GuestRequest::DiskWrite {
                    device: data_disk.map(str::to_string),
                    mib: d.written_mib,
                    offset_mib: 0,
                    seed: 1,
                },
            )
            .await?;
    }
    Ok(())
}

/// Starts an echo session from `netns` to `target` once the service
/// answers there, and waits for its first answered probe; `None` (logged)
/// when it cannot: the run then has no stall figure.
async fn watch_session(tool: &TrafficTool, netns: &str, target: &str) -> Option<Session> {
    let mut reached = false;
    for _ in 0..50 {
        if tool.client(netns, target, "echo", 0.5, false).is_ok() {
            reached = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if !reached {
        tracing::warn!(%target, "the VM's echo service does not answer: no stall figure for this run");
        return None;
    }
    let session = match Session::start(tool, netns, target) {
        Ok(s) => s,
        Err(error) => {
            tracing::warn!(%target, %error, "cannot start the client session");
            return None;
        }
    };
    let deadline = Instant::now() + SESSION_READY;
    while Instant::now() < deadline {
        let answered = session
            .snapshot()
            .iter()
            .any(|(_, v)| v["gaps_ms"].as_array().is_some_and(|gaps| !gaps.is_empty()));
        if answered {
            return Some(session);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tracing::warn!(%target, "the client session got no answer: no stall figure for this run");
    None
}

/// Writes the disk scenario's base image and imports it at the first site
/// (and the second when the destination holds it too); returns its digest.
async fn import_base(bed: &Bed, disk: &DiskSetup) -> Result<String, MigrateBenchError> {
    let path = std::env::temp_dir().join(format!("edgemig-bench-{}-base.raw", std::process::id()));
    let spec = BaseImageSpec {
        virtual_mib: u32::try_from(disk.disk_mib).unwrap_or(u32::MAX),
        offset_mib: disk.written_mib,
        data_mib: disk.base_mib,
        seed: 2,
    };
    let written = write_base_image(&path, &spec);
    let result = async {
        written
            .map_err(|e| MigrateBenchError::Config(format!("Cannot write the base image: {e}")))?;
        let import = ImageImport {
            path: path.display().to_string(),
            name: Some("bench-base".into()),
            firmware: None,
        };
        let image = bed.sites[0].import_image(&import).await?;
        if disk.base_at_destination {
            bed.sites[1].import_image(&import).await?;
        }
        Ok(image.digest)
    }
    .await;
    let _ = std::fs::remove_file(&path);
    result
}

async fn migrate_once(
    bed: &Bed,
    from: usize,
    to: usize,
    vm: &str,
    options: MigrateOptions,
    limit: Duration,
) -> Result<MigrationReport, MigrateBenchError> {
    let client = &bed.sites[from];
    let request = MigrateRequest {
        to: bed.names[to].clone(),
        options,
    };
    client.migrate(vm, &request).await?;
    let start = Instant::now();
    let mut cancelled = false;
    loop {
        let view = client.migration(vm).await?;
        if let Some(report) = view.report.filter(|_| !view.running) {
            return Ok(report);
        }
        if start.elapsed() > limit && !cancelled {
            client.cancel_migration(vm).await?;
            cancelled = true;
        }
        if start.elapsed() > limit + Duration::from_secs(120) {
            return Err(MigrateBenchError::Timeout(limit));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_counterbalanced() {
        let systems = [
            System::BASELINE,
            System::MULTIFD_TCP,
            System::BEST_SINGLE_PATH,
            System::MPTCP,
            System::AUTO,
        ];
        let order = counterbalanced(&systems, 3);
        assert_eq!(order.len(), 15);
        let firsts: Vec<&str> = order.chunks(5).map(|c| c[0].label).collect();
        assert_eq!(firsts, ["baseline", "auto", "baseline"]);
        for s in &systems {
            assert_eq!(order.iter().filter(|o| o.label == s.label).count(), 3);
        }
        // The VM goes back and forth: with an odd number of systems each
        // one migrates in the other direction in the next repetition.
        for s in &systems {
            let directions: Vec<usize> = order
                .iter()
                .enumerate()
                .filter(|(_, o)| o.label == s.label)
                .map(|(i, _)| i % 2)
                .collect();
            assert!(
                directions.contains(&0) && directions.contains(&1),
                "{}",
                s.label
            );
        }
        assert!(counterbalanced(&[], 3).is_empty());
        assert_eq!(counterbalanced(&systems, 1), systems);
    }

    #[test]
    fn systems_ask_for_what_they_say() {
        let best = System::BEST_SINGLE_PATH.options();
        assert_eq!(
            (best.transport, best.multifd, best.compression),
            (Transport::Tcp, Some(4), Compression::Zstd { level: None })
        );
        assert_eq!(best.validate(), Ok(()));
        let multifd = System::MULTIFD_TCP.options();
        assert_eq!(
            (multifd.transport, multifd.multifd, multifd.compression),
            (Transport::Tcp, Some(4), Compression::None)
        );
        let base = System::BASELINE.options();
        assert_eq!((base.transport, base.multifd), (Transport::Tcp, None));
        assert_eq!(System::AUTO.options().compression, Compression::Auto);
        assert_eq!(System::MPTCP.options().compression, Compression::None);
    }
}
