//! The demo's result: what alice saw and what the migration cost, all
//! measured in the run. Field names are a contract (`edgemig --json demo`,
//! docs/cli.md).

use edgemig_migration::MigrationReport;
use serde::Serialize;

use crate::session::Stall;

/// The demo's summary.
#[derive(Debug, Clone, Serialize)]
pub struct DemoSummary {
    /// The VM's name.
    pub vm: String,
    /// Where the VM runs after the follow policy moved it.
    pub vm_site: String,
    /// The Debian image it boots.
    pub image: DemoImage,
    /// From `vm start` to the guest agent's answer, ms (GRUB, kernel,
    /// systemd under TCG).
    pub boot_ms: u64,
    /// How nginx got MPTCP in the guest (`bpf` or `mptcpize`).
    pub mptcp_apps: String,
    /// What moved the VM.
    pub trigger: Trigger,
    /// Alice's download.
    pub session: Session,
    /// The VM's address before and after, and where alice's connection is.
    pub address: Address,
    /// Alice before the move (far site).
    pub before: Measure,
    /// Alice while the VM moved.
    pub during: Measure,
    /// Alice after the move (near site).
    pub after: Measure,
    /// The longest and the 99th-percentile gap in alice's download during
    /// the migration and its handoff, at 10 ms resolution.
    pub stall: Stall,
    /// Where the longest gap began, ms after the migration started.
    pub stall_at_ms: u64,
    /// The migration the policy started (its full report: `total_ms`,
    /// `downtime_ms`, `qemu_downtime_ms`, `fixed_ms`, `phases`, `disks`,
    /// `paths`, `network`, ...).
    pub migration: MigrationReport,
    /// With `--baseline`: the same VM moved back over one TCP path.
    pub baseline: Option<Baseline>,
}

/// The image at both sites.
#[derive(Debug, Clone, Serialize)]
pub struct DemoImage {
    /// Its name in the sites' caches.
    pub name: String,
    /// Its digest.
    pub digest: String,
    /// Debian packages on top of the base set.
    pub packages: Vec<String>,
    /// Bytes of the image file.
    pub file_bytes: u64,
    /// Compressed bytes `image push` sent to site-b.
    pub push_wire_bytes: u64,
    /// How long the push took, ms.
    pub push_ms: u64,
}

/// What started the migration.
#[derive(Debug, Clone, Serialize)]
pub struct Trigger {
    /// `follow`: the VM's follow policy.
    pub by: String,
    /// The policy's explanation of its decision.
    pub explanation: String,
    /// From setting the policy to the migration's start, ms.
    pub decided_ms: u64,
}

/// Alice's stock client and what became of its download.
#[derive(Debug, Clone, Serialize)]
pub struct Session {
    /// The client's command.
    pub client: String,
    /// What it downloads (again and again over one connection).
    pub url: String,
    /// Copies asked for.
    pub copies: u32,
    /// Bytes of one copy.
    pub copy_bytes: u64,
    /// Bytes received.
    pub bytes: u64,
    /// curl's exit code (`null`: it had to be ended).
    pub exit_code: Option<i32>,
    /// Copies whose FNV-1a 64 matched the file the guest wrote.
    pub verified_copies: u32,
    /// TCP/MPTCP connections curl opened (1: it never reconnected).
    pub connections: u32,
    /// Whether the download ran from before the migration until after the
    /// handoff (else the stall was not measured over the whole move).
    pub spanned: bool,
    /// Exit 0, every copy verified, one connection, spanned.
    pub alive: bool,
    /// What curl printed besides its per-transfer lines.
    pub errors: Vec<String>,
}

/// The VM's addresses and alice's subflows after the handoff.
#[derive(Debug, Clone, Serialize)]
pub struct Address {
    /// The VM's address at site-a.
    pub old: String,
    /// Its address at site-b.
    pub new: String,
    /// Alice's established subflows to the new address after the handoff.
    pub subflows_to_new: u32,
    /// Her established subflows to the old address after the handoff.
    pub subflows_to_old: u32,
}

/// Alice's view at one point of the story.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Measure {
    /// Median TCP handshake time to the VM, ms (`null` while it moves).
    pub rtt_ms: Option<f64>,
    /// Her download's throughput, Mbit/s (before: from its first second
    /// until the migration started; after: from half a second after the
    /// handoff until it ended).
    pub mbit: Option<f64>,
}

/// The measured single-path baseline.
#[derive(Debug, Clone, Serialize)]
pub struct Baseline {
    /// Its report (`transport: "tcp"`, back to site-a, VM idle).
    pub migration: MigrationReport,
    /// Its `total_ms` over the policy migration's.
    pub ratio: f64,
    /// Its copy time (disk and memory phases) over the policy
    /// migration's.
    pub copy_ratio: Option<f64>,
}

impl DemoSummary {
    /// Whether the story ended as it should: the VM near alice, her
    /// download alive, her connection on the new address, the stall
    /// measured over the whole move.
    pub fn story_ok(&self) -> bool {
        self.vm_site == "site-b"
            && self.session.alive
            && self.address.subflows_to_new > 0
            && self.address.subflows_to_old == 0
    }
}

/// Disk and memory phases of a report, ms.
pub fn copy_ms(r: &MigrationReport) -> Option<u64> {
    Some(r.phases.disk_ms.unwrap_or(0) + r.phases.memory_ms?)
}
