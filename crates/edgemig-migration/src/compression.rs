//! The model behind `--compression auto`: compress harder when the network
//! is the bottleneck, not at all when the CPU would be.
//!
//! After Ha et al. (SEC 2017): compression pays when the link, not the
//! CPU, limits the transfer. QEMU's multifd compresses in its channel
//! threads, so at most one core per channel works on it. The model:
//!
//! 1. `link_bytes = aggregate_bps / 8`: raw bytes per second the paths carry.
//! 2. `cores = min(spare_cores, channels)`; below
//!    [`MIN_SPARE_CORES_FOR_ZSTD`] never compress.
//! 3. `zstd_rate(level) = cores × ZSTD_LEVEL1_BYTES_PER_CORE × speed(level)`
//!    (raw bytes per second the compressors can consume; `speed` from
//!    [`ZSTD_RELATIVE_SPEED`]).
//! 4. Start from the level the bandwidth alone suggests
//!    ([`level_for_bandwidth`]: 5 below [`VERY_LOW_BANDWIDTH_BPS`], 3 below
//!    [`LOW_BANDWIDTH_BPS`], 2 below [`MEDIUM_BANDWIDTH_BPS`], else 1) and
//!    lower it until `zstd_rate(level) >= CPU_MARGIN × link_bytes`.
//! 5. If even level 1 is too slow, the CPU would be the bottleneck: no
//!    compression.
//!
//! The constants are deliberately conservative: guests here run under TCG,
//! whose vCPU threads compete with the compressors for the same cores.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Raw bytes per second one core compresses with zstd level 1 on guest
/// memory pages. zstd -1 does 300-500 MB/s on desktop CPUs; edge CPUs are
/// weaker and TCG guests compete, so 200 MB/s.
pub const ZSTD_LEVEL1_BYTES_PER_CORE: f64 = 200e6;

/// zstd speed at level `n` relative to level 1 (index `n - 1`), rounded
/// from the zstd benchmark table; levels above the table use the last
/// entry.
pub const ZSTD_RELATIVE_SPEED: [f64; 9] = [1.0, 0.75, 0.6, 0.5, 0.35, 0.28, 0.22, 0.18, 0.15];

/// The compressors must be able to consume raw data this many times faster
/// than the paths carry it, so that they stay off the critical path even
/// when a page compresses poorly and when the guest's own load peaks.
pub const CPU_MARGIN: f64 = 2.0;

/// Below this many spare cores `auto` never compresses: the guest (TCG
/// vCPU threads) would lose the CPU the compressors take.
pub const MIN_SPARE_CORES_FOR_ZSTD: f64 = 0.5;

/// Aggregate bandwidth (bit/s) below which level 5 is worth its CPU.
pub const VERY_LOW_BANDWIDTH_BPS: u64 = 20_000_000;
/// Aggregate bandwidth (bit/s) below which level 3 is used.
pub const LOW_BANDWIDTH_BPS: u64 = 200_000_000;
/// Aggregate bandwidth (bit/s) below which level 2 is used; above, level 1.
pub const MEDIUM_BANDWIDTH_BPS: u64 = 1_000_000_000;

/// Compression the plan settled on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlannedCompression {
    /// No compression (`multifd-compression: "none"` or no multifd).
    None,
    /// multifd zstd at this level (`multifd-zstd-level`).
    Zstd {
        /// zstd level, 1..=20.
        level: u8,
    },
}

impl fmt::Display for PlannedCompression {
    /// The report spelling: `none` or `zstd:LEVEL`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlannedCompression::None => f.write_str("none"),
            PlannedCompression::Zstd { level } => write!(f, "zstd:{level}"),
        }
    }
}

/// What the model needs to know.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompressionInputs {
    /// Sum of the path bandwidths, bit/s.
    pub aggregate_bps: u64,
    /// Cores the host can spare for migration.
    pub spare_cores: f64,
    /// multifd channels (one compressing thread each).
    pub channels: u8,
}

/// Relative speed of zstd `level` vs level 1.
pub fn relative_speed(level: u8) -> f64 {
    let idx = usize::from(level.max(1) - 1).min(ZSTD_RELATIVE_SPEED.len() - 1);
    ZSTD_RELATIVE_SPEED[idx]
}

/// Raw bytes per second `cores` compress at `level`.
pub fn zstd_rate_bytes_per_sec(level: u8, cores: f64) -> f64 {
    cores.max(0.0) * ZSTD_LEVEL1_BYTES_PER_CORE * relative_speed(level)
}

/// The level the bandwidth alone suggests: higher when the link is slower.
pub fn level_for_bandwidth(aggregate_bps: u64) -> u8 {
    if aggregate_bps < VERY_LOW_BANDWIDTH_BPS {
        5
    } else if aggregate_bps < LOW_BANDWIDTH_BPS {
        3
    } else if aggregate_bps < MEDIUM_BANDWIDTH_BPS {
        2
    } else {
        1
    }
}

/// Cores actually usable by the compressors.
pub fn usable_cores(inputs: &CompressionInputs) -> f64 {
    let spare = if inputs.spare_cores.is_finite() {
        inputs.spare_cores.max(0.0)
    } else {
        0.0
    };
    spare.min(f64::from(inputs.channels))
}

/// Highest level `<= start` whose compressors outrun the link by
/// [`CPU_MARGIN`], or `None` if even level 1 does not.
pub fn fastest_sufficient_level(start: u8, inputs: &CompressionInputs) -> Option<u8> {
    let link_bytes = inputs.aggregate_bps as f64 / 8.0;
    let cores = usable_cores(inputs);
    (1..=start.max(1))
        .rev()
        .find(|&l| zstd_rate_bytes_per_sec(l, cores) >= CPU_MARGIN * link_bytes)
}

/// Apply the model; returns the choice and a one-line explanation.
pub fn choose_compression(inputs: &CompressionInputs) -> (PlannedCompression, String) {
    let cores = usable_cores(inputs);
    let mbit = inputs.aggregate_bps as f64 / 1e6;
    if inputs.channels == 0 {
        return (
            PlannedCompression::None,
            "no multifd channels: no compression".into(),
        );
    }
    if inputs.spare_cores < MIN_SPARE_CORES_FOR_ZSTD {
        return (
            PlannedCompression::None,
            format!(
                "{:.2} spare cores < {MIN_SPARE_CORES_FOR_ZSTD}: no compression",
                inputs.spare_cores
            ),
        );
    }
    let start = level_for_bandwidth(inputs.aggregate_bps);
    match fastest_sufficient_level(start, inputs) {
        Some(level) => (
            PlannedCompression::Zstd { level },
            format!(
                "{mbit:.1} Mbit/s vs {:.0} MB/s zstd:{level} on {cores:.2} cores: \
                 network-bound, compress (bandwidth suggests level {start})",
                zstd_rate_bytes_per_sec(level, cores) / 1e6
            ),
        ),
        None => (
            PlannedCompression::None,
            format!(
                "{mbit:.1} Mbit/s needs {:.0} MB/s of zstd, {cores:.2} cores give {:.0} MB/s: \
                 CPU-bound, no compression",
                CPU_MARGIN * inputs.aggregate_bps as f64 / 8e6,
                zstd_rate_bytes_per_sec(1, cores) / 1e6
            ),
        ),
    }
}

#[cfg(test)]
#[path = "compression_tests.rs"]
mod tests;
