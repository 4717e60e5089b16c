//! QMP events: the raw [`Event`], its typed view [`KnownEvent`], and the
//! [`EventStream`] each subscriber reads them from.
//!
//! Events are fanned out over a bounded `tokio::sync::broadcast` channel.
//! A subscriber that falls behind loses the oldest events (logged, counted
//! in [`EventStream::lagged`]); it never slows down the reader task or the
//! delivery of command replies.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use tokio::sync::broadcast;

use crate::error::QmpError;
use crate::types::{JobStatus, JobType, MigrationStatus, ShutdownCause};

/// When QEMU emitted an event (host clock).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
pub struct Timestamp {
    pub seconds: i64,
    pub microseconds: i64,
}

impl Timestamp {
    /// As a `SystemTime`; `None` if QEMU had no clock (negative values).
    pub fn to_system_time(&self) -> Option<SystemTime> {
        let secs = u64::try_from(self.seconds).ok()?;
        let micros = u64::try_from(self.microseconds).ok()?;
        Some(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros))
    }
}

/// One event exactly as QEMU sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// e.g. `STOP`, `MIGRATION`.
    pub name: String,
    /// The `data` member; an empty object when QEMU sent none.
    pub data: Value,
    pub timestamp: Timestamp,
}

impl Event {
    pub(crate) fn from_object(mut obj: Map<String, Value>) -> Result<Self, String> {
        let name = match obj.remove("event") {
            Some(Value::String(s)) => s,
            _ => return Err("event name is not a string".into()),
        };
        let data = match obj.remove("data") {
            None | Some(Value::Null) => Value::Object(Map::new()),
            Some(v) => v,
        };
        let timestamp = obj
            .remove("timestamp")
            .and_then(|t| serde_json::from_value(t).ok())
            .unwrap_or_default();
        Ok(Event {
            name,
            data,
            timestamp,
        })
    }

    /// Deserializes `data` into any type.
    pub fn data_as<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(&self.data)
    }

    /// The typed view. Unknown events, and known events whose data does not
    /// have the expected shape, come back as [`KnownEvent::Unknown`].
    pub fn known(&self) -> KnownEvent {
        match self.try_known() {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!(event = %self.name, error = %e, "QMP event data has an unexpected shape");
                KnownEvent::Unknown(self.name.clone())
            }
        }
    }

    fn try_known(&self) -> Result<KnownEvent, serde_json::Error> {
        Ok(match self.name.as_str() {
            "STOP" => KnownEvent::Stop,
            "RESUME" => KnownEvent::Resume,
            "POWERDOWN" => KnownEvent::Powerdown,
            "SHUTDOWN" => {
                let d: ShutdownData = self.data_as()?;
                KnownEvent::Shutdown {
                    guest: d.guest,
                    reason: d.reason,
                }
            }
            "RESET" => {
                let d: ShutdownData = self.data_as()?;
                KnownEvent::Reset {
                    guest: d.guest,
                    reason: d.reason,
                }
            }
            "MIGRATION" => {
                let d: MigrationData = self.data_as()?;
                KnownEvent::Migration { status: d.status }
            }
            "MIGRATION_PASS" => {
                let d: PassData = self.data_as()?;
                KnownEvent::MigrationPass { pass: d.pass }
            }
            "BLOCK_JOB_READY" => KnownEvent::BlockJobReady(self.data_as()?),
            "BLOCK_JOB_COMPLETED" => KnownEvent::BlockJobCompleted(self.data_as()?),
            "BLOCK_JOB_CANCELLED" => KnownEvent::BlockJobCancelled(self.data_as()?),
            "BLOCK_JOB_ERROR" => {
                let d: BlockJobErrorData = self.data_as()?;
                KnownEvent::BlockJobError {
                    device: d.device,
                    operation: d.operation,
                    action: d.action,
                }
            }
            "JOB_STATUS_CHANGE" => {
                let d: JobStatusData = self.data_as()?;
                KnownEvent::JobStatusChange {
                    id: d.id,
                    status: d.status,
                }
            }
            "NIC_RX_FILTER_CHANGED" => {
                let d: NicData = self.data_as()?;
                KnownEvent::NicRxFilterChanged {
                    name: d.name,
                    path: d.path,
                }
            }
            "DEVICE_DELETED" => {
                let d: DeviceDeletedData = self.data_as()?;
                KnownEvent::DeviceDeleted {
                    device: d.device,
                    path: d.path,
                }
            }
            other => KnownEvent::Unknown(other.to_owned()),
        })
    }
}

/// Typed view of the events edgemig reacts to.
#[derive(Debug, Clone, PartialEq)]
pub enum KnownEvent {
    Stop,
    Resume,
    Powerdown,
    Shutdown {
        guest: bool,
        reason: ShutdownCause,
    },
    Reset {
        guest: bool,
        reason: ShutdownCause,
    },
    /// Needs the `events` migration capability.
    Migration {
        status: MigrationStatus,
    },
    /// Start of a new RAM pass (needs the `events` capability).
    MigrationPass {
        pass: u64,
    },
    BlockJobReady(BlockJobEvent),
    BlockJobCompleted(BlockJobEvent),
    BlockJobCancelled(BlockJobEvent),
    BlockJobError {
        device: String,
        /// `read` or `write`.
        operation: String,
        /// `ignore`, `report` or `stop`.
        action: String,
    },
    JobStatusChange {
        id: String,
        status: JobStatus,
    },
    NicRxFilterChanged {
        name: Option<String>,
        path: String,
    },
    DeviceDeleted {
        device: Option<String>,
        path: String,
    },
    /// Any other event (name kept; the data is in [`Event::data`]).
    Unknown(String),
}

/// Data of `BLOCK_JOB_READY` / `_COMPLETED` / `_CANCELLED`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BlockJobEvent {
    #[serde(rename = "type")]
    pub job_type: JobType,
    /// The job id.
    pub device: String,
    #[serde(default)]
    pub len: u64,
    #[serde(default)]
    pub offset: u64,
    #[serde(default)]
    pub speed: u64,
    /// Set on `BLOCK_JOB_COMPLETED` when the job failed.
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Deserialize)]
struct ShutdownData {
    #[serde(default)]
    guest: bool,
    #[serde(default = "unknown_cause")]
    reason: ShutdownCause,
}

fn unknown_cause() -> ShutdownCause {
    ShutdownCause::Other(String::new())
}

#[derive(Deserialize)]
struct MigrationData {
    status: MigrationStatus,
}

#[derive(Deserialize)]
struct PassData {
    pass: u64,
}

#[derive(Deserialize)]
struct BlockJobErrorData {
    device: String,
    #[serde(default)]
    operation: String,
    #[serde(default)]
    action: String,
}

#[derive(Deserialize)]
struct JobStatusData {
    id: String,
    status: JobStatus,
}

#[derive(Deserialize)]
struct NicData {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    path: String,
}

#[derive(Deserialize)]
struct DeviceDeletedData {
    #[serde(default)]
    device: Option<String>,
    #[serde(default)]
    path: String,
}

/// A subscription to the events of one QMP connection. Only events
/// emitted after the subscription was created are seen, so subscribe
/// before issuing the command that triggers the event you wait for.
#[derive(Debug)]
pub struct EventStream {
    rx: broadcast::Receiver<Event>,
    lagged: u64,
}

impl EventStream {
    pub(crate) fn new(rx: broadcast::Receiver<Event>) -> Self {
        EventStream { rx, lagged: 0 }
    }

    /// The next event; `None` once the connection is closed and every
    /// buffered event has been read.
    pub async fn recv(&mut self) -> Option<Event> {
        loop {
            match self.rx.recv().await {
                Ok(e) => return Some(e),
                Err(broadcast::error::RecvError::Lagged(n)) => self.note_lag(n),
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// An already buffered event, without waiting.
    pub fn try_recv(&mut self) -> Option<Event> {
        loop {
            match self.rx.try_recv() {
                Ok(e) => return Some(e),
                Err(broadcast::error::TryRecvError::Lagged(n)) => self.note_lag(n),
                Err(_) => return None,
            }
        }
    }

    /// Waits for the first event matching `pred`, discarding the others.
    /// Fails with [`QmpError::Timeout`] or, if QEMU goes away first,
    /// [`QmpError::ConnectionClosed`].
    pub async fn wait_for<F>(&mut self, mut pred: F, timeout: Duration) -> Result<Event, QmpError>
    where
        F: FnMut(&Event) -> bool,
    {
        let search = async {
            while let Some(e) = self.recv().await {
                if pred(&e) {
                    return Ok(e);
                }
            }
            Err(QmpError::ConnectionClosed)
        };
        tokio::time::timeout(timeout, search)
            .await
            .unwrap_or_else(|_| {
                Err(QmpError::Timeout {
                    what: "a matching QMP event".into(),
                    after: timeout,
                })
            })
    }

    /// Like [`Self::wait_for`], matching on the event name only.
    pub async fn wait_for_name(
        &mut self,
        name: &str,
        timeout: Duration,
    ) -> Result<Event, QmpError> {
        self.wait_for(|e| e.name == name, timeout).await
    }

    /// How many events this subscriber has lost by falling behind.
    pub fn lagged(&self) -> u64 {
        self.lagged
    }

    fn note_lag(&mut self, n: u64) {
        self.lagged += n;
        tracing::warn!(lost = n, "QMP event subscriber fell behind; events dropped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(v: Value) -> Event {
        let Value::Object(o) = v else { unreachable!() };
        Event::from_object(o).unwrap()
    }

    #[test]
    fn typed_views() {
        let e = ev(
            json!({"event": "MIGRATION", "data": {"status": "future-state"},
                          "timestamp": {"seconds": 5, "microseconds": 6}}),
        );
        assert_eq!(
            e.known(),
            KnownEvent::Migration {
                status: MigrationStatus::Other("future-state".into())
            }
        );
        assert_eq!(e.timestamp.seconds, 5);
        let e = ev(
            json!({"event": "SHUTDOWN", "data": {"guest": false, "reason": "host-qmp-quit", "new": 1}}),
        );
        assert_eq!(
            e.known(),
            KnownEvent::Shutdown {
                guest: false,
                reason: ShutdownCause::HostQmpQuit
            }
        );
        let e = ev(json!({"event": "BLOCK_JOB_READY",
            "data": {"type": "mirror", "device": "m0", "len": 10, "offset": 10, "speed": 0}}));
        match e.known() {
            KnownEvent::BlockJobReady(b) => {
                assert_eq!(b.job_type, JobType::Mirror);
                assert_eq!(b.device, "m0");
            }
            other => panic!("{other:?}"),
        }
        let e = ev(json!({"event": "STOP"}));
        assert_eq!(e.known(), KnownEvent::Stop);
        assert_eq!(e.data, json!({}));
        // Known name, broken data: Unknown, not a panic or error.
        let e = ev(json!({"event": "MIGRATION", "data": {"state": 1}}));
        assert_eq!(e.known(), KnownEvent::Unknown("MIGRATION".into()));
        let e = ev(json!({"event": "SOME_FUTURE_EVENT", "data": {"x": [1]}}));
        assert_eq!(e.known(), KnownEvent::Unknown("SOME_FUTURE_EVENT".into()));
    }
}
