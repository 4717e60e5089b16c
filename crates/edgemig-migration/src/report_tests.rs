//! Tests for [`super`]: the JSON contract of the report and progress lines.

use super::*;
use crate::job::SourceEvent;
use std::collections::BTreeSet;
use std::time::Duration;

fn report() -> MigrationReport {
    MigrationReport {
        status: ReportStatus::Completed,
        id: "0123456789abcdef".into(),
        total_ms: 19_300,
        downtime_ms: Some(150),
        qemu_downtime_ms: Some(40),
        fixed_ms: Some(1200),
        phases: PhaseTimes::default(),
        blackout: Blackout::default(),
        disk_bytes: 2 << 30,
        disks: vec![],
        memory_bytes: 300 << 20,
        paths: vec![
            PathBytes {
                name: "path1".into(),
                bytes: 160 << 20,
            },
            PathBytes {
                name: "path2".into(),
                bytes: 140 << 20,
            },
        ],
        transport: Transport::Mptcp,
        compression: "zstd:3".into(),
        error: None,
        insecure: false,
        vm: "vm0".into(),
        from: "site-a".into(),
        to: "site-b".into(),
        started_at: 1_764_158_916_000,
        network: None,
    }
}

fn keys(v: &serde_json::Value) -> BTreeSet<&str> {
    v.as_object().unwrap().keys().map(String::as_str).collect()
}

#[test]
fn report_key_set_is_the_contract() {
    let v = serde_json::to_value(report()).unwrap();
    let expected: BTreeSet<&str> = [
        "status",
        "id",
        "total_ms",
        "downtime_ms",
        "qemu_downtime_ms",
        "fixed_ms",
        "phases",
        "blackout",
        "disk_bytes",
        "disks",
        "memory_bytes",
        "paths",
        "transport",
        "compression",
        "error",
        "insecure",
        "vm",
        "from",
        "to",
        "started_at",
        "network",
    ]
    .into();
    assert_eq!(keys(&v), expected);
    assert_eq!(keys(&v["paths"][0]), ["bytes", "name"].into());
    assert_eq!(
        keys(&v["phases"]),
        [
            "disk_ms",
            "handoff_ms",
            "memory_ms",
            "postcopy_ms",
            "prepare_ms",
            "switchover_ms"
        ]
        .into()
    );
    assert_eq!(
        keys(&v["blackout"]),
        [
            "arrived_ms",
            "bytes",
            "commit_asked_ms",
            "commit_received_ms",
            "continued_ms",
            "resumed_ms",
            "sent_ms"
        ]
        .into()
    );
    assert_eq!(v["status"], "completed");
    assert_eq!(v["transport"], "mptcp");
    assert_eq!(v["compression"], "zstd:3");
    assert!(v["error"].is_null());
}

#[test]
fn null_fields_stay_present() {
    let mut r = report();
    r.downtime_ms = None;
    r.status = ReportStatus::Cancelled;
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(keys(&v).len(), 21);
    assert!(v["network"].is_null());
    assert!(v["downtime_ms"].is_null());
    assert_eq!(v["status"], "cancelled");
    let back: MigrationReport = serde_json::from_str(&r.to_json().unwrap()).unwrap();
    assert_eq!(back, r);
}

#[test]
fn report_from_phases() {
    let mut r = report();
    let done = SourcePhase::Network {
        paused_at: Duration::from_millis(1000),
        resumed_at: Duration::from_millis(1042),
    }
    .step(SourceEvent::NetworkDone)
    .unwrap();
    r.apply_phase(&done);
    assert_eq!(r.status, ReportStatus::Completed);
    assert_eq!(r.downtime_ms, Some(42));
    assert_eq!(r.error, None);

    let failed = SourcePhase::Memory
        .step(SourceEvent::Fail("link down".into()))
        .unwrap();
    r.apply_phase(&failed);
    assert_eq!(r.status, ReportStatus::Failed);
    assert_eq!(r.downtime_ms, None);
    assert_eq!(r.error.as_deref(), Some("memory: link down"));

    r.apply_phase(&SourcePhase::Memory.step(SourceEvent::Cancel).unwrap());
    assert_eq!(r.status, ReportStatus::Cancelled);
    assert_eq!(r.error.as_deref(), Some("cancelled in memory"));

    let aborted = SourcePhase::AwaitingCommit {
        paused_at: Duration::from_millis(5),
    }
    .step(SourceEvent::DestinationAborted)
    .unwrap();
    r.apply_phase(&aborted);
    assert_eq!(r.status, ReportStatus::Failed);
    assert!(r.error.as_deref().unwrap().contains("destination aborted"));

    r.apply_phase(&SourcePhase::Preparing);
    assert_eq!(r.status, ReportStatus::Failed);
    assert_eq!(r.error.as_deref(), Some("unfinished in prepare"));
}

#[test]
fn progress_event_is_one_json_line() {
    let p = ProgressEvent {
        phase: Phase::Memory,
        bytes_done: 100 << 20,
        bytes_left: 200 << 20,
        throughput_bps: 96_000_000,
        paths: vec![PathThroughput {
            name: "path1".into(),
            throughput_bps: 48_000_000,
        }],
        dirty_rate_bps: 1_000_000,
        eta_ms: eta_ms(200 << 20, 96_000_000, 1_000_000),
    };
    let line = p.to_json_line().unwrap();
    assert!(line.ends_with('\n'));
    assert_eq!(line.matches('\n').count(), 1);
    let v: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
    assert_eq!(
        keys(&v),
        [
            "bytes_done",
            "bytes_left",
            "dirty_rate_bps",
            "eta_ms",
            "paths",
            "phase",
            "throughput_bps"
        ]
        .into()
    );
    assert_eq!(v["phase"], "memory");
    assert_eq!(keys(&v["paths"][0]), ["name", "throughput_bps"].into());
}

#[test]
fn eta() {
    // 12.5 MB at 100 Mbit/s net = 1 s.
    assert_eq!(eta_ms(12_500_000, 100_000_000, 0), Some(1000));
    assert_eq!(eta_ms(12_500_000, 150_000_000, 50_000_000), Some(1000));
    assert_eq!(eta_ms(1, 100, 100), None);
    assert_eq!(eta_ms(1, 100, 200), None);
    assert_eq!(eta_ms(0, 100, 0), Some(0));
}
