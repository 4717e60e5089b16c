//! QAPI enums (open: unknown values become `Other`) and the result
//! structures of the queries edgemig uses. Result structs ignore unknown
//! fields and make everything optional that QEMU may leave out.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::open_enum::open_enum;
use crate::wire::QemuVersion;

open_enum! {
    /// QAPI `MigrationStatus`.
    pub enum MigrationStatus {
        None = "none",
        Setup = "setup",
        Cancelling = "cancelling",
        Cancelled = "cancelled",
        Active = "active",
        PostcopyActive = "postcopy-active",
        PostcopyPaused = "postcopy-paused",
        PostcopyRecoverSetup = "postcopy-recover-setup",
        PostcopyRecover = "postcopy-recover",
        Completed = "completed",
        Failed = "failed",
        Colo = "colo",
        PreSwitchover = "pre-switchover",
        Device = "device",
        WaitUnplug = "wait-unplug",
    }
}

impl MigrationStatus {
    /// The migration is over, one way or the other.
    pub fn is_finished(&self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

open_enum! {
    /// QAPI `RunState` (from `query-status`).
    pub enum RunState {
        Debug = "debug",
        InMigrate = "inmigrate",
        InternalError = "internal-error",
        IoError = "io-error",
        Paused = "paused",
        PostMigrate = "postmigrate",
        Prelaunch = "prelaunch",
        FinishMigrate = "finish-migrate",
        RestoreVm = "restore-vm",
        Running = "running",
        SaveVm = "save-vm",
        Shutdown = "shutdown",
        Suspended = "suspended",
        Watchdog = "watchdog",
        GuestPanicked = "guest-panicked",
        Colo = "colo",
    }
}

open_enum! {
    /// QAPI `JobStatus` (block jobs, `JOB_STATUS_CHANGE`).
    pub enum JobStatus {
        Undefined = "undefined",
        Created = "created",
        Running = "running",
        Paused = "paused",
        Ready = "ready",
        Standby = "standby",
        Waiting = "waiting",
        Pending = "pending",
        Aborting = "aborting",
        Concluded = "concluded",
        Null = "null",
    }
}

open_enum! {
    /// QAPI `JobType`.
    pub enum JobType {
        Commit = "commit",
        Stream = "stream",
        Mirror = "mirror",
        Backup = "backup",
        Create = "create",
        Amend = "amend",
        SnapshotLoad = "snapshot-load",
        SnapshotSave = "snapshot-save",
        SnapshotDelete = "snapshot-delete",
    }
}

open_enum! {
    /// QAPI `ShutdownCause` (the `reason` of `SHUTDOWN`).
    pub enum ShutdownCause {
        None = "none",
        HostError = "host-error",
        HostQmpQuit = "host-qmp-quit",
        HostQmpSystemReset = "host-qmp-system-reset",
        HostSignal = "host-signal",
        HostUi = "host-ui",
        GuestShutdown = "guest-shutdown",
        GuestReset = "guest-reset",
        GuestPanic = "guest-panic",
        SubsystemReset = "subsystem-reset",
        SnapshotLoad = "snapshot-load",
    }
}

open_enum! {
    /// QAPI `MigrationCapability` (for `migrate-set-capabilities`).
    pub enum MigrationCapability {
        Xbzrle = "xbzrle",
        AutoConverge = "auto-converge",
        Events = "events",
        PostcopyRam = "postcopy-ram",
        ReleaseRam = "release-ram",
        ReturnPath = "return-path",
        PauseBeforeSwitchover = "pause-before-switchover",
        Multifd = "multifd",
        DirtyBitmaps = "dirty-bitmaps",
        PostcopyBlocktime = "postcopy-blocktime",
        LateBlockActivate = "late-block-activate",
        ValidateUuid = "validate-uuid",
        ZeroCopySend = "zero-copy-send",
        PostcopyPreempt = "postcopy-preempt",
        SwitchoverAck = "switchover-ack",
        DirtyLimit = "dirty-limit",
        MappedRam = "mapped-ram",
    }
}

open_enum! {
    /// QAPI `MirrorSyncMode`.
    pub enum MirrorSyncMode {
        Top = "top",
        Full = "full",
        None = "none",
        Incremental = "incremental",
        Bitmap = "bitmap",
    }
}

open_enum! {
    /// QAPI `MirrorCopyMode`.
    pub enum MirrorCopyMode {
        Background = "background",
        WriteBlocking = "write-blocking",
    }
}

/// Reply of `query-version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    pub qemu: QemuVersion,
    #[serde(default)]
    pub package: String,
}

/// Reply of `query-status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusInfo {
    pub running: bool,
    pub status: RunState,
}

/// Reply of `query-migrate`. Every field is optional: QEMU only fills in
/// what applies to the current state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct MigrationInfo {
    pub status: Option<MigrationStatus>,
    pub ram: Option<RamStats>,
    /// Milliseconds since the migration started.
    pub total_time: Option<u64>,
    /// Estimated downtime in ms (while active).
    pub expected_downtime: Option<u64>,
    /// Actual downtime in ms (once completed).
    pub downtime: Option<u64>,
    pub setup_time: Option<u64>,
    pub cpu_throttle_percentage: Option<u64>,
    pub error_desc: Option<String>,
    pub blocked_reasons: Option<Vec<String>>,
    pub postcopy_blocktime: Option<u64>,
    /// Listening addresses on the destination (`SocketAddress` list), raw.
    pub socket_address: Option<Vec<Value>>,
    pub xbzrle_cache: Option<Value>,
    pub vfio: Option<Value>,
}

/// `ram` part of `query-migrate`. Byte counts unless noted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct RamStats {
    pub transferred: Option<u64>,
    pub remaining: Option<u64>,
    pub total: Option<u64>,
    /// Zero pages (count).
    pub duplicate: Option<u64>,
    /// Non-zero pages sent (count).
    pub normal: Option<u64>,
    pub normal_bytes: Option<u64>,
    /// Pages dirtied per second.
    pub dirty_pages_rate: Option<u64>,
    /// Throughput in Mbit/s.
    pub mbps: Option<f64>,
    pub dirty_sync_count: Option<u64>,
    pub postcopy_requests: Option<u64>,
    pub page_size: Option<u64>,
    pub multifd_bytes: Option<u64>,
    pub pages_per_second: Option<u64>,
    pub precopy_bytes: Option<u64>,
    pub downtime_bytes: Option<u64>,
    pub postcopy_bytes: Option<u64>,
}

/// One entry of `query-block-jobs` (QAPI `BlockJobInfo`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct BlockJobInfo {
    #[serde(rename = "type")]
    pub job_type: JobType,
    /// Job id (named `device` for historical reasons).
    pub device: String,
    #[serde(default)]
    pub len: u64,
    #[serde(default)]
    pub offset: u64,
    #[serde(default)]
    pub busy: bool,
    #[serde(default)]
    pub paused: bool,
    #[serde(default)]
    pub speed: u64,
    #[serde(default)]
    pub io_status: Option<String>,
    #[serde(default)]
    pub ready: bool,
    pub status: JobStatus,
    #[serde(default)]
    pub auto_finalize: Option<bool>,
    #[serde(default)]
    pub auto_dismiss: Option<bool>,
    #[serde(default)]
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_enum_values_become_other_and_round_trip() {
        let s: MigrationStatus = serde_json::from_value(json!("future-state")).unwrap();
        assert_eq!(s, MigrationStatus::Other("future-state".into()));
        assert!(!s.is_known());
        assert_eq!(serde_json::to_value(&s).unwrap(), json!("future-state"));
        let s: MigrationStatus = serde_json::from_value(json!("postcopy-active")).unwrap();
        assert_eq!(s, MigrationStatus::PostcopyActive);
        assert_eq!(RunState::from("prelaunch"), RunState::Prelaunch);
        assert_eq!("write-blocking".parse(), Ok(MirrorCopyMode::WriteBlocking));
    }

    #[test]
    fn query_migrate_is_lenient() {
        let v = json!({
            "status": "active",
            "ram": {"transferred": 10, "remaining": 5, "total": 20, "mbps": 42.5,
                    "dirty-pages-rate": 7, "brand-new-counter": 1},
            "expected-downtime": 300,
            "a-future-field": {"x": 1}
        });
        let info: MigrationInfo = serde_json::from_value(v).unwrap();
        assert_eq!(info.status, Some(MigrationStatus::Active));
        let ram = info.ram.unwrap();
        assert_eq!(ram.dirty_pages_rate, Some(7));
        assert_eq!(ram.mbps, Some(42.5));
        assert_eq!(ram.postcopy_bytes, None);
        let empty: MigrationInfo = serde_json::from_value(json!({})).unwrap();
        assert_eq!(empty, MigrationInfo::default());
    }
}
