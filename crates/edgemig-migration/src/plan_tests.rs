//! Tests for [`super`]: plans for the baseline, MPTCP and postcopy.

use super::*;
use std::time::Duration;

fn env(paths: &[u64], spare_cores: f64) -> HostEnv {
    HostEnv {
        path_bandwidth_bps: paths.to_vec(),
        spare_cores,
        vcpus: 1,
        memory_bytes: 512 << 20,
        disk_bytes: Some(2 << 30),
    }
}

fn testbed() -> HostEnv {
    env(&[50_000_000, 50_000_000], 1.0)
}

#[test]
fn tcp_is_the_plain_qemu_baseline() {
    let opts = MigrateOptions {
        transport: Transport::Tcp,
        ..Default::default()
    };
    let plan = plan_migration(&opts, &testbed());
    assert_eq!(plan.multifd_channels, None);
    assert_eq!(plan.compression, PlannedCompression::None);
    assert_eq!(plan.capability("multifd"), Some(false));
    assert_eq!(plan.capability("auto-converge"), Some(false));
    assert_eq!(plan.capability("postcopy-ram"), Some(false));
    assert_eq!(plan.capability("events"), Some(true));
    let p = plan.parameters.as_object().unwrap();
    assert!(!p.contains_key("multifd-channels"));
    assert!(!p.contains_key("multifd-compression"));
    assert_eq!(p["downtime-limit"], 100);
}

#[test]
fn mptcp_uses_multifd_zstd_and_auto_converge() {
    let plan = plan_migration(&MigrateOptions::default(), &testbed());
    assert_eq!(plan.multifd_channels, Some(4));
    assert_eq!(plan.compression, PlannedCompression::Zstd { level: 3 });
    assert_eq!(plan.capability("multifd"), Some(true));
    assert_eq!(plan.capability("auto-converge"), Some(true));
    assert_eq!(plan.capability("postcopy-ram"), Some(false));
    assert!(!plan.postcopy_allowed);
    let p = &plan.parameters;
    assert_eq!(p["multifd-channels"], 4);
    assert_eq!(p["multifd-compression"], "zstd");
    assert_eq!(p["multifd-zstd-level"], 3);
    assert_eq!(p["cpu-throttle-initial"], CPU_THROTTLE_INITIAL);
    assert_eq!(p["cpu-throttle-increment"], CPU_THROTTLE_INCREMENT);
}

#[test]
fn max_bandwidth_is_well_above_qemu_default_and_in_bytes() {
    let plan = plan_migration(&MigrateOptions::default(), &testbed());
    assert_eq!(plan.max_bandwidth_bps, MAX_BANDWIDTH_FLOOR_BPS);
    let bytes = plan.parameters["max-bandwidth"].as_u64().unwrap();
    assert_eq!(bytes, MAX_BANDWIDTH_FLOOR_BPS / 8);
    assert!(bytes > 128 << 20);
    // Fat paths: aggregate x headroom.
    let fat = plan_migration(
        &MigrateOptions::default(),
        &env(&[10_000_000_000, 10_000_000_000], 8.0),
    );
    assert_eq!(fat.max_bandwidth_bps, 80_000_000_000);
}

#[test]
fn user_bandwidth_limit_wins() {
    let opts = MigrateOptions {
        bandwidth_limit_bps: Some(40_000_000),
        ..Default::default()
    };
    let plan = plan_migration(&opts, &testbed());
    assert_eq!(plan.max_bandwidth_bps, 40_000_000);
    assert_eq!(plan.parameters["max-bandwidth"], 5_000_000);
}

#[test]
fn postcopy_fallback_drops_multifd() {
    for transport in [Transport::Mptcp, Transport::Tcp] {
        let opts = MigrateOptions {
            transport,
            postcopy: PostcopyPolicy::Fallback,
            compression: Compression::Zstd { level: Some(3) },
            ..Default::default()
        };
        let plan = plan_migration(&opts, &testbed());
        assert!(plan.postcopy_allowed);
        assert_eq!(plan.multifd_channels, None, "{transport}");
        assert_eq!(plan.compression, PlannedCompression::None);
        assert_eq!(plan.capability("postcopy-ram"), Some(true));
        assert_eq!(plan.capability("multifd"), Some(false));
        assert!(
            !plan
                .parameters
                .as_object()
                .unwrap()
                .contains_key("multifd-channels")
        );
    }
    let opts = MigrateOptions {
        postcopy: PostcopyPolicy::Fallback,
        ..Default::default()
    };
    assert_eq!(
        plan_migration(&opts, &testbed()).capability("auto-converge"),
        Some(true)
    );
}

#[test]
fn explicit_compression_requests() {
    let mut opts = MigrateOptions {
        compression: Compression::None,
        ..Default::default()
    };
    let plan = plan_migration(&opts, &testbed());
    assert_eq!(plan.compression, PlannedCompression::None);
    // Nothing to compress: one MPTCP stream, no multifd.
    assert_eq!(plan.multifd_channels, None);
    assert_eq!(plan.capability("multifd"), Some(false));
    assert!(plan.parameters.get("multifd-compression").is_none());
    assert!(plan.parameters.get("multifd-zstd-level").is_none());
    assert!(
        plan.rationale
            .iter()
            .any(|r| r.contains("one MPTCP stream"))
    );
    // Asked for, multifd stays, uncompressed.
    let plan = plan_migration(
        &MigrateOptions {
            multifd: Some(4),
            ..opts.clone()
        },
        &testbed(),
    );
    assert_eq!(plan.multifd_channels, Some(4));
    assert_eq!(plan.parameters["multifd-compression"], "none");

    opts.compression = Compression::Zstd { level: Some(9) };
    let plan = plan_migration(&opts, &env(&[10_000_000_000], 0.1));
    assert_eq!(plan.compression, PlannedCompression::Zstd { level: 9 });

    // "zstd" forces compression even when auto would not, level from model.
    opts.compression = Compression::Zstd { level: None };
    let plan = plan_migration(&opts, &env(&[10_000_000_000], 0.1));
    assert_eq!(plan.compression, PlannedCompression::Zstd { level: 1 });
    let plan = plan_migration(&opts, &testbed());
    assert_eq!(plan.compression, PlannedCompression::Zstd { level: 3 });
}

#[test]
fn auto_skips_compression_without_spare_cpu() {
    let plan = plan_migration(&MigrateOptions::default(), &env(&[50_000_000], 0.2));
    assert_eq!(plan.compression, PlannedCompression::None);
    assert_eq!(plan.multifd_channels, None, "no compression, no multifd");
    assert_eq!(plan.capability("auto-converge"), Some(true));
}

#[test]
fn unknown_bandwidth_assumes_edge_wan() {
    let plan = plan_migration(&MigrateOptions::default(), &env(&[], 1.0));
    assert_eq!(plan.compression, PlannedCompression::Zstd { level: 3 });
    assert!(
        plan.rationale
            .iter()
            .any(|r| r.contains("no path bandwidth"))
    );
}

#[test]
fn downtime_and_capability_arguments() {
    let opts = MigrateOptions {
        max_downtime: Duration::from_millis(50),
        ..Default::default()
    };
    let plan = plan_migration(&opts, &testbed());
    assert_eq!(plan.downtime_limit_ms, 50);
    assert_eq!(plan.parameters["downtime-limit"], 50);
    let args = plan.capabilities_arguments();
    assert_eq!(
        args["capabilities"][1],
        serde_json::json!({"capability": "multifd", "state": true})
    );
}

#[test]
fn planning_is_deterministic() {
    let a = plan_migration(&MigrateOptions::default(), &testbed());
    let b = plan_migration(&MigrateOptions::default(), &testbed());
    assert_eq!(a, b);
}

#[test]
fn tcp_honours_multifd_and_compresses_for_one_path() {
    let opts = MigrateOptions {
        transport: Transport::Tcp,
        multifd: Some(4),
        compression: Compression::Zstd { level: None },
        ..Default::default()
    };
    let plan = plan_migration(&opts, &testbed());
    assert_eq!(plan.multifd_channels, Some(4));
    assert_eq!(plan.capability("multifd"), Some(true));
    // One TCP path is slower than both: the model picks its level for 50
    // Mbit/s, not for the 100 Mbit/s aggregate.
    let one_path = plan_migration(
        &MigrateOptions {
            transport: Transport::Mptcp,
            ..opts.clone()
        },
        &env(&[50_000_000], 1.0),
    );
    assert_eq!(plan.compression, one_path.compression);
    assert!(matches!(plan.compression, PlannedCompression::Zstd { .. }));
    let p = &plan.parameters;
    assert_eq!(p["multifd-channels"], 4);
    assert_eq!(p["multifd-compression"], "zstd");
    // Still the single-path QEMU setup otherwise: no auto-converge.
    assert_eq!(plan.capability("auto-converge"), Some(false));
    assert!(p.get("cpu-throttle-initial").is_none());
    // Without compression: multifd only.
    let plain = plan_migration(
        &MigrateOptions {
            compression: Compression::None,
            multifd: Some(2),
            ..opts
        },
        &testbed(),
    );
    assert_eq!(plain.multifd_channels, Some(2));
    assert_eq!(plain.compression, PlannedCompression::None);
    assert_eq!(plain.parameters["multifd-compression"], "none");
}

#[test]
fn mptcp_multifd_count_can_be_chosen() {
    let opts = MigrateOptions {
        multifd: Some(8),
        ..Default::default()
    };
    let plan = plan_migration(&opts, &testbed());
    assert_eq!(plan.multifd_channels, Some(8));
    assert_eq!(plan.parameters["multifd-channels"], 8);
    // A request for multifd never overrides the postcopy fallback (the
    // options' validation refuses the pair; the plan stays safe anyway).
    let plan = plan_migration(
        &MigrateOptions {
            postcopy: PostcopyPolicy::Fallback,
            ..opts
        },
        &testbed(),
    );
    assert_eq!(plan.multifd_channels, None);
    assert_eq!(plan.capability("multifd"), Some(false));
}

#[test]
fn switchover_bandwidth_is_the_paths_rate_in_bytes() {
    // MPTCP: the aggregate of both paths.
    let plan = plan_migration(&MigrateOptions::default(), &testbed());
    assert_eq!(plan.switchover_bandwidth_bps, Some(100_000_000));
    assert_eq!(plan.parameters["avail-switchover-bandwidth"], 12_500_000);
    // TCP: the first path only.
    let tcp = MigrateOptions {
        transport: Transport::Tcp,
        ..Default::default()
    };
    let plan = plan_migration(&tcp, &env(&[50_000_000, 20_000_000], 1.0));
    assert_eq!(plan.parameters["avail-switchover-bandwidth"], 6_250_000);
    // A user's limit caps it.
    let limited = MigrateOptions {
        bandwidth_limit_bps: Some(40_000_000),
        ..Default::default()
    };
    let plan = plan_migration(&limited, &testbed());
    assert_eq!(plan.parameters["avail-switchover-bandwidth"], 5_000_000);
    // Unknown rates: QEMU keeps its own estimate.
    let plan = plan_migration(&MigrateOptions::default(), &env(&[], 1.0));
    assert_eq!(plan.switchover_bandwidth_bps, None);
    assert!(plan.parameters.get("avail-switchover-bandwidth").is_none());
}
