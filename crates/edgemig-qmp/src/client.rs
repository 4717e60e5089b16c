//! The connection: [`Qmp`] handle, background reader and writer tasks.
//!
//! Every command gets a fresh numeric `id` and a oneshot channel parked in
//! the pending map; the reader task routes the reply with that id back to
//! it, and sends events to the broadcast channel. Lines are written by a
//! writer task, so a caller that is cancelled (timeout, dropped future)
//! never leaves half a command on the socket. When the socket closes, every
//! pending and later call fails with [`QmpError::ConnectionClosed`].

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::AbortHandle;

use crate::error::{QmpError, Result};
use crate::events::{Event, EventStream};
use crate::wire::{self, Greeting, Incoming, QemuVersion, Reply};

/// Connection settings.
#[derive(Debug, Clone)]
pub struct QmpConfig {
    /// Default timeout of each command (see [`Qmp::with_timeout`]).
    pub command_timeout: Duration,
    /// How long to wait for the greeting and `qmp_capabilities`.
    pub handshake_timeout: Duration,
    /// Events buffered per subscriber before the oldest are dropped.
    pub event_capacity: usize,
}

impl Default for QmpConfig {
    fn default() -> Self {
        QmpConfig {
            command_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            event_capacity: 1024,
        }
    }
}

/// A QMP connection. Clones share the connection; use it from any number
/// of tasks concurrently. The connection closes when the last clone is
/// dropped (or when QEMU closes it).
#[derive(Clone, Debug)]
pub struct Qmp {
    inner: Arc<Inner>,
    timeout: Duration,
}

#[derive(Debug)]
struct Inner {
    shared: Arc<Shared>,
    lines: mpsc::UnboundedSender<Vec<u8>>,
    greeting: Greeting,
    reader: AbortHandle,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

type Pending = HashMap<u64, oneshot::Sender<Reply>>;

#[derive(Debug)]
struct Shared {
    /// `None` once the connection is closed.
    pending: Mutex<Option<Pending>>,
    /// Kept for `subscribe`; taken when the connection closes so that
    /// subscribers see the end of the stream.
    events: Mutex<Option<broadcast::Sender<Event>>>,
    closed: watch::Sender<bool>,
    next_id: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The protected data stays consistent even if a holder panicked.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// Marks the connection closed; pending callers get `ConnectionClosed`
    /// (their oneshot sender is dropped). Idempotent.
    fn close(&self) {
        let pending = lock(&self.pending).take();
        lock(&self.events).take();
        self.closed.send_replace(true);
        let in_flight = pending.map_or(0, |p| p.len());
        if in_flight > 0 {
            tracing::debug!(in_flight, "QMP connection closed with commands in flight");
        }
    }

    fn dispatch(&self, line: &[u8], events: &broadcast::Sender<Event>) {
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        match wire::parse_line(line) {
            Ok(Incoming::Reply { id, reply }) => {
                let waiter = lock(&self.pending).as_mut().and_then(|p| p.remove(&id));
                match waiter {
                    // The caller may have given up meanwhile; that is fine.
                    Some(tx) => drop(tx.send(reply)),
                    None => tracing::debug!(id, "QMP reply nobody waits for (timed out?)"),
                }
            }
            Ok(Incoming::Event(e)) => {
                tracing::trace!(event = %e.name, "QMP event");
                // No subscriber is not an error.
                drop(events.send(e));
            }
            Ok(Incoming::Ignored(why)) => {
                tracing::warn!(line = %wire::preview(line), "ignoring QMP message: {why}");
            }
            Err(why) => {
                tracing::warn!(line = %wire::preview(line), "ignoring unparsable QMP line: {why}");
            }
        }
    }
}

impl Qmp {
    /// Connects to a QMP unix socket with default settings, performs the
    /// handshake and returns the client plus an event subscription that
    /// sees every event from the start of the session.
    pub async fn connect(path: impl AsRef<Path>) -> Result<(Qmp, EventStream)> {
        Self::connect_with(path, &QmpConfig::default()).await
    }

    /// [`Self::connect`] with explicit settings.
    pub async fn connect_with(
        path: impl AsRef<Path>,
        config: &QmpConfig,
    ) -> Result<(Qmp, EventStream)> {
        let stream = UnixStream::connect(path.as_ref()).await?;
        Self::from_stream(stream, config).await
    }

    /// Keeps trying to connect until the socket exists and accepts (QEMU
    /// just spawned), for at most `within`.
    pub async fn connect_when_ready(
        path: impl AsRef<Path>,
        config: &QmpConfig,
        within: Duration,
    ) -> Result<(Qmp, EventStream)> {
        let path = path.as_ref();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match UnixStream::connect(path).await {
                Ok(s) => return Self::from_stream(s, config).await,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                    ) =>
                {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(QmpError::Timeout {
                            what: format!("QMP socket {}", path.display()),
                            after: within,
                        });
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Runs the protocol over an already connected byte stream (unix
    /// socket, socketpair, ...).
    pub async fn from_stream<S>(stream: S, config: &QmpConfig) -> Result<(Qmp, EventStream)>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (rd, mut wr) = tokio::io::split(stream);
        let mut rd = BufReader::new(rd);
        let mut line = Vec::new();
        let n = tokio::time::timeout(config.handshake_timeout, rd.read_until(b'\n', &mut line))
            .await
            .map_err(|_| QmpError::Timeout {
                what: "QMP greeting".into(),
                after: config.handshake_timeout,
            })??;
        if n == 0 {
            return Err(QmpError::ConnectionClosed);
        }
        let greeting = Greeting::parse(&line)?;
        tracing::debug!(version = %greeting.version, "QMP greeting");

        let (events_tx, events_rx) = broadcast::channel(config.event_capacity.max(1));
        let shared = Arc::new(Shared {
            pending: Mutex::new(Some(HashMap::new())),
            events: Mutex::new(Some(events_tx.clone())),
            closed: watch::Sender::new(false),
            next_id: AtomicU64::new(1),
        });

        let reader = tokio::spawn({
            let shared = Arc::clone(&shared);
            async move {
                let mut buf = Vec::new();
                loop {
                    buf.clear();
                    match rd.read_until(b'\n', &mut buf).await {
                        Ok(0) => break,
                        Ok(_) => shared.dispatch(&buf, &events_tx),
                        Err(e) => {
                            tracing::debug!(error = %e, "QMP read failed");
                            break;
                        }
                    }
                }
                shared.close();
            }
        })
        .abort_handle();

        let (lines_tx, mut lines_rx) = mpsc::unbounded_channel::<Vec<u8>>();
        tokio::spawn({
            let shared = Arc::clone(&shared);
            async move {
                while let Some(l) = lines_rx.recv().await {
                    if let Err(e) = wr.write_all(&l).await {
                        tracing::debug!(error = %e, "QMP write failed");
                        shared.close();
                        return;
                    }
                }
                // All handles dropped: close our side.
                drop(wr.shutdown().await);
            }
        });

        let qmp = Qmp {
            inner: Arc::new(Inner {
                shared,
                lines: lines_tx,
                greeting,
                reader,
            }),
            timeout: config.command_timeout,
        };
        qmp.execute_timeout("qmp_capabilities", None, config.handshake_timeout)
            .await?;
        Ok((qmp, EventStream::new(events_rx)))
    }

    /// The greeting QEMU sent.
    pub fn greeting(&self) -> &Greeting {
        &self.inner.greeting
    }

    /// QEMU's version, from the greeting.
    pub fn version(&self) -> QemuVersion {
        self.inner.greeting.version
    }

    /// A new event subscription (sees events from now on). On a closed
    /// connection the stream is empty.
    pub fn subscribe(&self) -> EventStream {
        let rx = match lock(&self.inner.shared.events).as_ref() {
            Some(tx) => tx.subscribe(),
            None => broadcast::channel(1).1,
        };
        EventStream::new(rx)
    }

    /// A handle on the same connection whose commands (including the typed
    /// helpers) use `timeout` by default.
    pub fn with_timeout(&self, timeout: Duration) -> Qmp {
        Qmp {
            inner: Arc::clone(&self.inner),
            timeout,
        }
    }

    /// The default command timeout of this handle.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// True once QEMU closed the connection.
    pub fn is_closed(&self) -> bool {
        *self.inner.shared.closed.borrow()
    }

    /// Resolves when the connection is closed (QEMU exited or hung up).
    pub async fn closed(&self) {
        let mut rx = self.inner.shared.closed.subscribe();
        // Err only if the sender is gone, which means closed as well.
        drop(rx.wait_for(|c| *c).await);
    }

    /// Runs a command with the default timeout and returns its `return`
    /// value unchanged.
    pub async fn execute(&self, command: &str, arguments: Option<Value>) -> Result<Value> {
        self.execute_timeout(command, arguments, self.timeout).await
    }

    /// Runs a command and deserializes its `return` value.
    pub async fn execute_as<T: DeserializeOwned>(
        &self,
        command: &str,
        arguments: Option<Value>,
    ) -> Result<T> {
        let v = self.execute(command, arguments).await?;
        serde_json::from_value(v).map_err(|source| QmpError::Decode {
            command: command.to_owned(),
            source,
        })
    }

    /// Runs a command with an explicit timeout. On timeout the command may
    /// still run in QEMU; its late reply is discarded.
    pub async fn execute_timeout(
        &self,
        command: &str,
        arguments: Option<Value>,
        timeout: Duration,
    ) -> Result<Value> {
        let shared = &self.inner.shared;
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let mut msg = Map::new();
        msg.insert("execute".into(), Value::from(command));
        if let Some(args) = arguments {
            msg.insert("arguments".into(), args);
        }
        msg.insert("id".into(), Value::from(id));
        let mut line = serde_json::to_vec(&msg).map_err(|e| QmpError::Protocol(e.to_string()))?;
        line.push(b'\n');

        let (tx, rx) = oneshot::channel();
        match lock(&shared.pending).as_mut() {
            Some(p) => p.insert(id, tx),
            None => return Err(QmpError::ConnectionClosed),
        };
        // Removes the pending entry however this future ends.
        let _guard = PendingGuard { shared, id };
        tracing::trace!(id, command, "QMP execute");
        if self.inner.lines.send(line).is_err() {
            return Err(QmpError::ConnectionClosed);
        }
        match tokio::time::timeout(timeout, rx).await {
            Err(_) => Err(QmpError::Timeout {
                what: format!("the reply to {command}"),
                after: timeout,
            }),
            Ok(Err(_)) => Err(QmpError::ConnectionClosed),
            Ok(Ok(Reply::Return(v))) => Ok(v),
            Ok(Ok(Reply::Error { class, desc })) => Err(QmpError::Qemu {
                command: command.to_owned(),
                class,
                desc,
            }),
        }
    }
}

struct PendingGuard<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        if let Some(p) = lock(&self.shared.pending).as_mut() {
            p.remove(&self.id);
        }
    }
}
