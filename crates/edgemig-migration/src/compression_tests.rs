//! Tests for [`super`]: the auto-compression model.

use super::*;

fn inputs(mbit: u64, spare_cores: f64) -> CompressionInputs {
    CompressionInputs {
        aggregate_bps: mbit * 1_000_000,
        spare_cores,
        channels: 4,
    }
}

#[test]
fn testbed_paths_compress_at_level_3() {
    // 2 x 50 Mbit/s and 50 + 20 Mbit/s, one spare core.
    for mbit in [100, 70] {
        let (c, why) = choose_compression(&inputs(mbit, 1.0));
        assert_eq!(c, PlannedCompression::Zstd { level: 3 }, "{why}");
    }
}

#[test]
fn very_low_bandwidth_compresses_harder() {
    let (c, _) = choose_compression(&inputs(10, 1.0));
    assert_eq!(c, PlannedCompression::Zstd { level: 5 });
}

#[test]
fn level_never_increases_with_bandwidth() {
    let mut last = u8::MAX;
    for mbit in [1, 5, 19, 20, 50, 100, 199, 200, 500, 999, 1000, 2000, 5000] {
        let level = match choose_compression(&inputs(mbit, 2.0)).0 {
            PlannedCompression::None => 0,
            PlannedCompression::Zstd { level } => level,
        };
        assert!(level <= last, "{mbit} Mbit/s -> level {level} > {last}");
        last = level;
    }
}

#[test]
fn fast_network_and_little_cpu_means_no_compression() {
    // 10 Gbit/s = 1.25 GB/s; 1 core gives 200 MB/s.
    let (c, why) = choose_compression(&inputs(10_000, 1.0));
    assert_eq!(c, PlannedCompression::None, "{why}");
    assert!(why.contains("CPU-bound"));
}

#[test]
fn cpu_limits_the_level() {
    // 500 Mbit/s = 62.5 MB/s, margin 2 -> 125 MB/s needed. Bandwidth says 2
    // (150 MB/s on 1 core: enough); with 0.8 cores level 2 gives 120 MB/s,
    // level 1 gives 160 MB/s.
    assert_eq!(
        choose_compression(&inputs(500, 1.0)).0,
        PlannedCompression::Zstd { level: 2 }
    );
    assert_eq!(
        choose_compression(&inputs(500, 0.8)).0,
        PlannedCompression::Zstd { level: 1 }
    );
}

#[test]
fn too_few_spare_cores_never_compresses() {
    let (c, why) = choose_compression(&inputs(10, 0.4));
    assert_eq!(c, PlannedCompression::None);
    assert!(why.contains("spare cores"));
    assert_eq!(
        choose_compression(&inputs(10, f64::NAN)).0,
        PlannedCompression::None
    );
}

#[test]
fn compression_is_bounded_by_channels() {
    let one_channel = CompressionInputs {
        aggregate_bps: 1_500_000_000,
        spare_cores: 16.0,
        channels: 1,
    };
    // 187.5 MB/s x 2 = 375 MB/s needed, one channel = one core = 200 MB/s.
    assert_eq!(choose_compression(&one_channel).0, PlannedCompression::None);
    let four = CompressionInputs {
        channels: 4,
        ..one_channel
    };
    assert_eq!(
        choose_compression(&four).0,
        PlannedCompression::Zstd { level: 1 }
    );
}

#[test]
fn display_matches_report_spelling() {
    assert_eq!(PlannedCompression::None.to_string(), "none");
    assert_eq!(PlannedCompression::Zstd { level: 3 }.to_string(), "zstd:3");
}
