//! The host end of the guest agent's virtio-serial port: JSON lines over the
//! QEMU chardev's Unix socket, requests matched to responses by id.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use edgemig_guest_proto::{
    AgentInfo, GuestEvent, GuestMessage, GuestOutcome, GuestReply, GuestRequest, HostMessage,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::{Mutex, oneshot, watch};

/// Errors of the guest channel.
#[derive(Debug, thiserror::Error)]
pub enum GuestChannelError {
    /// The chardev socket could not be reached.
    #[error("Cannot connect to the guest channel")]
    Connect(#[source] std::io::Error),
    /// Writing the request failed or the channel closed before the answer.
    #[error("Guest channel closed")]
    Closed,
    /// The guest agent did not answer in time.
    #[error("Guest agent did not answer within {0:?}")]
    Timeout(Duration),
    /// The guest agent did not report ready in time.
    #[error("Guest agent not ready after {0:?}")]
    NotReady(Duration),
    /// The guest agent answered with an error.
    #[error("Guest agent: {0}")]
    Guest(String),
}

#[derive(Debug)]
struct Inner {
    writer: Mutex<OwnedWriteHalf>,
    pending: std::sync::Mutex<HashMap<u64, oneshot::Sender<GuestOutcome>>>,
    next_id: AtomicU64,
    ready: watch::Sender<Option<AgentInfo>>,
    closed: watch::Sender<bool>,
}

/// A connected guest channel; cheap to clone.
#[derive(Debug, Clone)]
pub struct GuestChannel {
    inner: Arc<Inner>,
}

impl GuestChannel {
    /// Connects to the chardev socket at `path` and starts reading.
    pub async fn connect(path: &Path) -> Result<Self, GuestChannelError> {
        let stream = UnixStream::connect(path)
            .await
            .map_err(GuestChannelError::Connect)?;
        let (read, write) = stream.into_split();
        let inner = Arc::new(Inner {
            writer: Mutex::new(write),
            pending: std::sync::Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            ready: watch::channel(None).0,
            closed: watch::channel(false).0,
        });
        let reader_inner = inner.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(read).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                handle_line(&reader_inner, &line);
            }
            reader_inner.closed.send_replace(true);
            lock_pending(&reader_inner).clear();
        });
        Ok(Self { inner })
    }

    /// The guest agent's identity once it reported ready.
    pub fn agent(&self) -> Option<AgentInfo> {
        self.inner.ready.borrow().clone()
    }

    /// Whether the channel's socket has closed.
    pub fn is_closed(&self) -> bool {
        *self.inner.closed.borrow()
    }

    /// Waits until the guest agent reported ready.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<AgentInfo, GuestChannelError> {
        let mut rx = self.inner.ready.subscribe();
        let waited = tokio::time::timeout(timeout, rx.wait_for(Option::is_some)).await;
        match waited {
            Ok(Ok(info)) => Ok(info.clone().ok_or(GuestChannelError::Closed)?),
            Ok(Err(_)) => Err(GuestChannelError::Closed),
            Err(_) => Err(GuestChannelError::NotReady(timeout)),
        }
    }

    /// Sends `request` and waits up to `timeout` for its answer.
    pub async fn request(
        &self,
        request: GuestRequest,
        timeout: Duration,
    ) -> Result<GuestReply, GuestChannelError> {
        if self.is_closed() {
            return Err(GuestChannelError::Closed);
        }
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock_pending(&self.inner).insert(id, tx);
        let mut line = serde_json::to_vec(&HostMessage { id, request })
            .map_err(|_| GuestChannelError::Closed)?;
        line.push(b'\n');
        let written = self.inner.writer.lock().await.write_all(&line).await;
        if written.is_err() {
            lock_pending(&self.inner).remove(&id);
            return Err(GuestChannelError::Closed);
        }
        let outcome = tokio::time::timeout(timeout, rx).await;
        lock_pending(&self.inner).remove(&id);
        match outcome {
            Ok(Ok(GuestOutcome::Ok(reply))) => {
                if let GuestReply::Hello(info) = &reply {
                    self.inner.ready.send_replace(Some(info.clone()));
                }
                Ok(reply)
            }
            Ok(Ok(GuestOutcome::Error(text))) => Err(GuestChannelError::Guest(text)),
            Ok(Err(_)) => Err(GuestChannelError::Closed),
            Err(_) => Err(GuestChannelError::Timeout(timeout)),
        }
    }
}

fn lock_pending(
    inner: &Inner,
) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<GuestOutcome>>> {
    inner
        .pending
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn handle_line(inner: &Inner, line: &str) {
    match serde_json::from_str::<GuestMessage>(line) {
        Ok(GuestMessage::Event {
            event: GuestEvent::Ready(info),
        }) => {
            tracing::info!(version = %info.version, boot_ms = info.boot_ms, "guest agent ready");
            // A Ready on an open channel means the agent (re)started: the
            // requests it had will never be answered.
            let dropped = std::mem::take(&mut *lock_pending(inner));
            if !dropped.is_empty() {
                tracing::warn!(
                    pending = dropped.len(),
                    "guest agent restarted; failing its pending requests"
                );
            }
            inner.ready.send_replace(Some(info));
        }
        Ok(GuestMessage::Response { id, outcome }) => {
            if let Some(tx) = lock_pending(inner).remove(&id) {
                let _ = tx.send(outcome);
            }
        }
        Err(error) => {
            tracing::debug!(%error, len = line.len(), "ignoring unparsable guest line");
        }
    }
}

#[cfg(test)]
mod tests {
    use edgemig_guest_proto::MemVerifyReport;
    use tokio::net::UnixListener;

    use super::*;

    #[tokio::test]
    async fn matches_responses_and_survives_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let guest = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let (read, mut write) = stream.into_split();
            let ready = GuestMessage::Event {
                event: GuestEvent::Ready(AgentInfo {
                    version: "0.1.0".into(),
                    protocol: 1,
                    boot_ms: 900,
                }),
            };
            let mut out = serde_json::to_string(&ready).unwrap();
            out.push_str(
                "\nnot json at all\n{\"type\":\"event\",\"event\":{\"kind\":\"future\"}}\n",
            );
            write.write_all(out.as_bytes()).await.unwrap();
            let mut lines = BufReader::new(read).lines();
            let line = lines.next_line().await.unwrap().unwrap();
            let msg: HostMessage = serde_json::from_str(&line).unwrap();
            assert_eq!(msg.request, GuestRequest::MemVerify);
            let reply = GuestMessage::Response {
                id: msg.id,
                outcome: GuestOutcome::Ok(GuestReply::MemVerify(MemVerifyReport {
                    pages: 1,
                    bad_pages: 0,
                    first_bad_page: None,
                })),
            };
            let mut out = serde_json::to_string(&reply).unwrap();
            out.push('\n');
            write.write_all(out.as_bytes()).await.unwrap();
            lines.next_line().await.unwrap();
        });
        let ch = GuestChannel::connect(&path).await.unwrap();
        let info = ch.wait_ready(Duration::from_secs(5)).await.unwrap();
        assert_eq!(info.boot_ms, 900);
        let reply = ch
            .request(GuestRequest::MemVerify, Duration::from_secs(5))
            .await
            .unwrap();
        assert!(matches!(reply, GuestReply::MemVerify(r) if r.pages == 1));
        drop(ch);
        guest.abort();
    }

    #[tokio::test]
    async fn closed_channel_fails_pending_request() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.sock");
        let listener = UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
            drop(stream);
        });
        let ch = GuestChannel::connect(&path).await.unwrap();
        let err = ch
            .request(GuestRequest::Hello, Duration::from_secs(10))
            .await
            .unwrap_err();
        assert!(matches!(err, GuestChannelError::Closed), "{err}");
    }
}
