//! [`plan_migration`]: options + measured host facts → what to tell QEMU.
//!
//! The plan is data only: capabilities for `migrate-set-capabilities` and
//! an argument object for `migrate-set-parameters`, both spelled as QEMU
//! 10's `qapi/migration.json` spells them (`MigrationCapability`,
//! `MigrationParameters`). The caller applies them on the source (and the
//! capabilities and multifd parameters on the destination too).
//!
//! | transport / postcopy | multifd | compression | auto-converge | postcopy-ram |
//! |---|---|---|---|---|
//! | `tcp` (baseline), never | no | none | no | no |
//! | `tcp` + `multifd_channels: N`, never | N channels over the one path | per request / model | no | no |
//! | `tcp`, fallback | no | none | no | yes |
//! | `mptcp`, never | `multifd_channels`; else [`MPTCP_MULTIFD_CHANNELS`] when it compresses, one stream when not | per request / model | yes | no |
//! | `mptcp`, fallback | no (QEMU 10.0 refuses multifd + postcopy) | none | yes | yes |
//!
//! The bandwidth a plan counts on is the sum of the known path rates with
//! `mptcp` and the first path's rate with `tcp` (one TCP connection, or a
//! few over the same path, use one path: the one the peer's address is
//! on, listed first). The `auto` compression model and QEMU's
//! `avail-switchover-bandwidth` (bytes/s: QEMU then decides when the rest
//! fits in `downtime-limit` from this rate instead of its own estimate)
//! use it; `avail-switchover-bandwidth` is left at QEMU's default (0: its
//! own estimate) when no path rate is known, and never exceeds a user's
//! `bandwidth_limit_bps`.

use crate::compression::{CompressionInputs, choose_compression};
use crate::options::{Compression, MigrateOptions, PostcopyPolicy, Transport};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

pub use crate::compression::PlannedCompression;

/// multifd channels for MPTCP when it compresses: 4 measured best on the
/// reference testbed (2 paths, 2 cores): MPTCP + multifd(4) + zstd 19.3 s
/// vs 28.9 s without. Without compression the plan takes one MPTCP stream:
/// as fast over both paths, and without multifd's final sync, which held
/// the VM paused 0.2–0.9 s longer under TCG (`docs/results.md`).
pub const MPTCP_MULTIFD_CHANNELS: u8 = 4;

/// `max-bandwidth` is the aggregate path bandwidth times this headroom, so
/// QEMU's rate limiter never becomes the bottleneck when a measurement
/// underestimates the paths.
pub const MAX_BANDWIDTH_HEADROOM: f64 = 4.0;

/// `max-bandwidth` never goes below 8 Gbit/s (1 GB/s), far above QEMU's
/// 128 MiB/s default, which would cap a fast multi-path migration.
pub const MAX_BANDWIDTH_FLOOR_BPS: u64 = 8_000_000_000;

/// Aggregate bandwidth assumed when no path bandwidth is known: a modest
/// edge WAN, so `auto` compression errs towards compressing.
pub const UNKNOWN_BANDWIDTH_BPS: u64 = 100_000_000;

/// `cpu-throttle-initial` when auto-converge is on (QEMU default 20): the
/// guests this helps dirty memory 2x faster than the paths carry it, so
/// start higher.
pub const CPU_THROTTLE_INITIAL: u8 = 30;

/// `cpu-throttle-increment` when auto-converge is on (QEMU default 10):
/// reach heavy throttling in a few iterations instead of eight.
pub const CPU_THROTTLE_INCREMENT: u8 = 20;

/// What the host can give to the migration, measured or configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostEnv {
    /// Bandwidth of each path between the sites, bit/s.
    pub path_bandwidth_bps: Vec<u64>,
    /// Cores the source host can spare for migration threads.
    pub spare_cores: f64,
    /// vCPUs of the guest.
    pub vcpus: u32,
    /// Guest RAM size in bytes.
    pub memory_bytes: u64,
    /// Bytes of disk to mirror, if any.
    pub disk_bytes: Option<u64>,
}

impl HostEnv {
    /// Sum of the known path bandwidths (bit/s), or `None` if none known.
    pub fn aggregate_bps(&self) -> Option<u64> {
        let sum = self
            .path_bandwidth_bps
            .iter()
            .fold(0u64, |a, b| a.saturating_add(*b));
        (sum > 0).then_some(sum)
    }

    /// Bandwidth (bit/s) the transport can use, or `None` if not known: all
    /// paths with MPTCP, the first path with TCP.
    pub fn usable_bps(&self, transport: Transport) -> Option<u64> {
        match transport {
            Transport::Mptcp => self.aggregate_bps(),
            Transport::Tcp => self.path_bandwidth_bps.first().copied().filter(|b| *b > 0),
        }
    }
}

/// Everything edgemig tells QEMU about one migration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MigrationPlan {
    /// Transport the plan was made for.
    pub transport: Transport,
    /// multifd channels; `None` means one migration stream (no multifd).
    pub multifd_channels: Option<u8>,
    /// Compression applied by the multifd channels.
    pub compression: PlannedCompression,
    /// Rate cap for QEMU, bit/s (QEMU's `max-bandwidth` is this / 8).
    pub max_bandwidth_bps: u64,
    /// QEMU's `downtime-limit`, ms.
    pub downtime_limit_ms: u64,
    /// QEMU's `avail-switchover-bandwidth` in bit/s (the parameter is this
    /// / 8); `None` leaves QEMU's own estimate (no path rate known).
    #[serde(default)]
    pub switchover_bandwidth_bps: Option<u64>,
    /// Whether `auto-converge` is on from the start.
    pub auto_converge: bool,
    /// Whether postcopy may be started (`postcopy-ram` capability on).
    pub postcopy_allowed: bool,
    /// `migrate-set-capabilities` entries: (QEMU name, state).
    pub capabilities: Vec<(String, bool)>,
    /// `migrate-set-parameters` arguments (a JSON object, QEMU names).
    pub parameters: Value,
    /// Human-readable reasons for the choices, for logs and `--verbose`.
    pub rationale: Vec<String>,
}

impl MigrationPlan {
    /// State of capability `name` in the plan, if listed.
    pub fn capability(&self, name: &str) -> Option<bool> {
        self.capabilities
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, on)| *on)
    }

    /// `migrate-set-capabilities` arguments:
    /// `{"capabilities": [{"capability": NAME, "state": BOOL}, ...]}`.
    pub fn capabilities_arguments(&self) -> Value {
        let caps: Vec<Value> = self
            .capabilities
            .iter()
            .map(|(n, on)| json!({"capability": n, "state": on}))
            .collect();
        json!({ "capabilities": caps })
    }
}

/// Decide how to migrate. Pure and deterministic.
pub fn plan_migration(opts: &MigrateOptions, env: &HostEnv) -> MigrationPlan {
    let mut rationale = Vec::new();
    let postcopy_allowed = opts.postcopy == PostcopyPolicy::Fallback;
    let known = env.usable_bps(opts.transport);
    let usable = known.unwrap_or_else(|| {
        rationale.push(format!(
            "no path bandwidth known: assuming {} Mbit/s",
            UNKNOWN_BANDWIDTH_BPS / 1_000_000
        ));
        UNKNOWN_BANDWIDTH_BPS
    });
    let aggregate = env.aggregate_bps().unwrap_or(UNKNOWN_BANDWIDTH_BPS);

    let multifd_channels = match (opts.transport, postcopy_allowed, opts.multifd) {
        (_, true, _) => {
            rationale.push(format!(
                "postcopy fallback: QEMU 10.0 refuses multifd with postcopy, one {} stream",
                opts.transport
            ));
            None
        }
        (Transport::Tcp, false, None) => {
            rationale.push("tcp baseline: one stream, no multifd".into());
            None
        }
        (Transport::Tcp, false, Some(n)) => {
            rationale.push(format!("tcp: {n} multifd channels over one path"));
            Some(n)
        }
        (Transport::Mptcp, false, requested) => Some(requested.unwrap_or(MPTCP_MULTIFD_CHANNELS)),
    };

    let compression = plan_compression(opts.compression, multifd_channels, usable, env);
    rationale.push(compression.1);
    let compression = compression.0;
    // multifd is worth its switchover only when it compresses: one MPTCP
    // stream carries both paths as fast, and pauses the VM far shorter.
    let multifd_channels = match (opts.transport, opts.multifd, compression) {
        (Transport::Mptcp, None, PlannedCompression::None) if multifd_channels.is_some() => {
            rationale.push(
                "no compression: one MPTCP stream, no multifd (its final sync lengthens the pause)"
                    .into(),
            );
            None
        }
        _ => multifd_channels,
    };

    let auto_converge = opts.transport == Transport::Mptcp;
    let max_bandwidth_bps = match opts.bandwidth_limit_bps {
        Some(limit) => {
            rationale.push(format!("user bandwidth limit {limit} bit/s"));
            limit
        }
        None => ((aggregate as f64 * MAX_BANDWIDTH_HEADROOM) as u64).max(MAX_BANDWIDTH_FLOOR_BPS),
    };
    let switchover_bandwidth_bps = known.map(|bps| match opts.bandwidth_limit_bps {
        Some(limit) => bps.min(limit),
        None => bps,
    });
    if let Some(bps) = switchover_bandwidth_bps {
        rationale.push(format!(
            "switchover decided at {} Mbit/s (the paths' rate)",
            bps / 1_000_000
        ));
    }
    let downtime_limit_ms = u64::try_from(opts.max_downtime.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);

    let capabilities = vec![
        ("events".to_owned(), true),
        ("multifd".to_owned(), multifd_channels.is_some()),
        ("auto-converge".to_owned(), auto_converge),
        ("postcopy-ram".to_owned(), postcopy_allowed),
    ];

    let mut p = Map::new();
    p.insert("max-bandwidth".into(), json!(max_bandwidth_bps / 8));
    p.insert("downtime-limit".into(), json!(downtime_limit_ms));
    if let Some(bps) = switchover_bandwidth_bps {
        p.insert("avail-switchover-bandwidth".into(), json!(bps / 8));
    }
    if let Some(ch) = multifd_channels {
        p.insert("multifd-channels".into(), json!(ch));
        match compression {
            PlannedCompression::None => {
                p.insert("multifd-compression".into(), json!("none"));
            }
            PlannedCompression::Zstd { level } => {
                p.insert("multifd-compression".into(), json!("zstd"));
                p.insert("multifd-zstd-level".into(), json!(level));
            }
        }
    }
    if auto_converge {
        p.insert("cpu-throttle-initial".into(), json!(CPU_THROTTLE_INITIAL));
        p.insert(
            "cpu-throttle-increment".into(),
            json!(CPU_THROTTLE_INCREMENT),
        );
    }

    MigrationPlan {
        transport: opts.transport,
        multifd_channels,
        compression,
        max_bandwidth_bps,
        downtime_limit_ms,
        switchover_bandwidth_bps,
        auto_converge,
        postcopy_allowed,
        capabilities,
        parameters: Value::Object(p),
        rationale,
    }
}

/// Compression for the plan: only multifd compresses (QEMU 9.1 removed the
/// legacy single-stream compression).
fn plan_compression(
    requested: Compression,
    channels: Option<u8>,
    usable_bps: u64,
    env: &HostEnv,
) -> (PlannedCompression, String) {
    let Some(channels) = channels else {
        return (
            PlannedCompression::None,
            "no multifd: no compression".into(),
        );
    };
    let inputs = CompressionInputs {
        aggregate_bps: usable_bps,
        spare_cores: env.spare_cores,
        channels,
    };
    match requested {
        Compression::None => (
            PlannedCompression::None,
            "compression none requested".into(),
        ),
        Compression::Zstd { level: Some(level) } => (
            PlannedCompression::Zstd { level },
            format!("zstd:{level} requested"),
        ),
        Compression::Zstd { level: None } => {
            let start = crate::compression::level_for_bandwidth(usable_bps);
            let level = crate::compression::fastest_sufficient_level(start, &inputs).unwrap_or(1);
            (
                PlannedCompression::Zstd { level },
                format!("zstd requested, level {level} from the model"),
            )
        }
        Compression::Auto => choose_compression(&inputs),
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
