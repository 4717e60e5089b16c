//! The host end of the guest agent's virtio-serial port: JSON lines over the
//! QEMU chardev's Unix socket, requests matched to responses by id. The
//! guest is not trusted: a line longer than [`MAX_LINE`] is dropped (and
//! logged at most once per [`LOG_EVERY`]) without ever being held whole.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use edgemig_guest_proto::{
    AgentInfo, GuestEvent, GuestMessage, GuestOutcome, GuestReply, GuestRequest, HostMessage,
};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
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

/// Longest line taken from the guest; every message is far shorter (a
/// connection report of 256 connections is about 64 KiB).
pub const MAX_LINE: usize = 1 << 20;
/// At most one log line about dropped guest lines per this interval.
const LOG_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct Inner {
    writer: Mutex<OwnedWriteHalf>,
    pending: std::sync::Mutex<HashMap<u64, oneshot::Sender<GuestOutcome>>>,
    next_id: AtomicU64,
    ready: watch::Sender<Option<AgentInfo>>,
    /// Ready events seen: one per start of the guest agent.
    starts: watch::Sender<u64>,
    closed: watch::Sender<bool>,
}

/// One line read from the guest.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// A line within the limit, without its newline.
    Text(Vec<u8>),
    /// A line over [`MAX_LINE`], dropped; its length.
    Oversized(usize),
}

/// Reads the next line, holding at most `max` bytes of it; `None` at the
/// end of the stream (a last line without newline counts as a line).
async fn read_line_capped<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> std::io::Result<Option<Line>> {
    let mut buf = Vec::new();
    let mut dropped: Option<usize> = None;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(match (dropped, buf.is_empty()) {
                (Some(n), _) => Some(Line::Oversized(n)),
                (None, true) => None,
                (None, false) => Some(Line::Text(buf)),
            });
        }
        let (piece, end) = match available.iter().position(|b| *b == b'\n') {
            Some(pos) => (&available[..pos], Some(pos + 1)),
            None => (available, None),
        };
        match &mut dropped {
            Some(n) => *n += piece.len(),
            None if buf.len() + piece.len() > max => {
                dropped = Some(buf.len() + piece.len());
                buf = Vec::new();
            }
            None => buf.extend_from_slice(piece),
        }
        let used = end.unwrap_or(available.len());
        reader.consume(used);
        if end.is_some() {
            return Ok(Some(match dropped {
                Some(n) => Line::Oversized(n),
                None => Line::Text(buf),
            }));
        }
    }
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
            starts: watch::channel(0).0,
            closed: watch::channel(false).0,
        });
        let reader_inner = inner.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(read);
            let mut last_log: Option<tokio::time::Instant> = None;
            let mut dropped_since_log = 0u64;
            while let Ok(Some(line)) = read_line_capped(&mut reader, MAX_LINE).await {
                match line {
                    Line::Text(bytes) => {
                        handle_line(&reader_inner, &String::from_utf8_lossy(&bytes))
                    }
                    Line::Oversized(len) => {
                        dropped_since_log += 1;
                        if last_log.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
                            tracing::warn!(
                                len,
                                dropped = dropped_since_log,
                                max = MAX_LINE,
                                "dropped an oversized line from the guest"
                            );
                            last_log = Some(tokio::time::Instant::now());
                            dropped_since_log = 0;
                        }
                    }
                }
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

    /// Counts the guest agent's starts (ready events) on this channel; it
    /// changes each time the agent (re)starts in the guest.
    pub fn starts(&self) -> watch::Receiver<u64> {
        self.inner.starts.subscribe()
    }

    /// Resolves once the channel's socket has closed.
    pub async fn closed(&self) {
        let mut rx = self.inner.closed.subscribe();
        let _ = rx.wait_for(|c| *c).await;
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
            for tx in dropped.into_values() {
                let _ = tx.send(GuestOutcome::Error(
                    "the guest agent restarted before it answered".into(),
                ));
            }
            inner.ready.send_replace(Some(info));
            inner.starts.send_modify(|n| *n += 1);
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

    /// The guest agent's `ready` event, as one line without its newline.
    fn ready_line(boot_ms: u64) -> String {
        let ready = GuestMessage::Event {
            event: GuestEvent::Ready(AgentInfo {
                version: "0.1.0".into(),
                protocol: 1,
                boot_ms,
                kernel: String::new(),
                systemd: false,
                mptcp_apps: Default::default(),
            }),
        };
        serde_json::to_string(&ready).unwrap()
    }

    #[tokio::test]
    async fn matches_responses_and_survives_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let guest = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let (read, mut write) = stream.into_split();
            let mut out = ready_line(900);
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
    async fn oversized_lines_are_dropped_without_being_held() {
        let long = vec![b'x'; 3 * 1024];
        let mut input = Vec::new();
        input.extend_from_slice(b"short\n");
        input.extend_from_slice(&long);
        input.extend_from_slice(b"\nafter\ntail");
        // A tiny buffer makes the long line arrive in many pieces.
        let mut reader = BufReader::with_capacity(64, input.as_slice());
        let mut got = Vec::new();
        while let Some(line) = read_line_capped(&mut reader, 1024).await.unwrap() {
            got.push(line);
        }
        assert_eq!(
            got,
            vec![
                Line::Text(b"short".to_vec()),
                Line::Oversized(3 * 1024),
                Line::Text(b"after".to_vec()),
                Line::Text(b"tail".to_vec()),
            ]
        );
    }

    #[tokio::test]
    async fn a_guest_agent_restart_fails_its_pending_request_saying_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let guest = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read).lines();
            // The request arrives, then the agent starts again instead of
            // answering it.
            lines.next_line().await.unwrap().unwrap();
            let out = ready_line(5) + "\n";
            write.write_all(out.as_bytes()).await.unwrap();
            lines.next_line().await.ok();
        });
        let ch = GuestChannel::connect(&path).await.unwrap();
        let err = ch
            .request(GuestRequest::MemVerify, Duration::from_secs(10))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, GuestChannelError::Guest(text) if text.contains("restarted")),
            "{err}"
        );
        assert!(!ch.is_closed(), "the channel itself stays open");
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
