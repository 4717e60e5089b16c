//! `image push`: copying a cached image to another site ahead of its VMs,
//! over the agents' mutual-TLS peer API (MPTCP, so over every path), as
//! independent zstd chunks (`images::stream`). The destination writes a
//! partial file, checks the digest at the end and only then admits the
//! image; a push that was cut (path down, agent restarted) is retried and
//! resumes at the destination's last whole chunk.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::http::Method;
use bytes::Bytes;
use edgemig_api::ImageInfo;
use edgemig_api::images::{ImagePush, ImagePushReport};
use edgemig_api::peer::{PeerImageStatus, PeerImageUpload};
use edgemig_pki::{PeerClient, PeerError};
use futures_util::StreamExt;
use http_body_util::StreamBody;
use hyper::body::Frame;

use super::images::{SPACE_MARGIN, free_bytes};
use super::{Manager, ManagerError};
use crate::images::stream::{self, CHUNK, Decoder};
use crate::images::{CachedImage, ImageError, ImageMeta};

/// Attempts of one push before it gives up (each resumes).
const ATTEMPTS: u32 = 6;
/// Wait before the first retry; doubled each time.
const RETRY_BACKOFF: Duration = Duration::from_secs(2);
/// A chunk that cannot be handed to the connection for this long means the
/// connection is dead: the attempt ends and the next one resumes.
const STALL: Duration = Duration::from_secs(20);
/// The receiver gives up on a body that sends nothing for this long.
const RECEIVE_IDLE: Duration = Duration::from_secs(60);
/// How long the destination may take to verify an image once all of it
/// was sent.
const FINISH_LIMIT: Duration = Duration::from_secs(300);
/// Limit of one status request.
const STATUS_TIMEOUT: Duration = Duration::from_secs(20);
/// Limit of one upload request (the stall check ends dead ones earlier).
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(6 * 3600);
/// Chunks read ahead of the connection.
const READ_AHEAD: usize = 4;

/// Uploads of one image in progress here (receiving side), by digest: a
/// newer upload of the same image takes over from a stuck older one.
#[derive(Debug, Default)]
pub(crate) struct Receiving {
    generations: std::sync::Mutex<HashMap<String, u64>>,
    next: AtomicU64,
}

impl Receiving {
    fn begin(&self, digest: &str) -> u64 {
        let generation = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        self.lock().insert(digest.to_string(), generation);
        generation
    }

    fn current(&self, digest: &str, generation: u64) -> bool {
        self.lock().get(digest) == Some(&generation)
    }

    fn end(&self, digest: &str, generation: u64) {
        let mut map = self.lock();
        if map.get(digest) == Some(&generation) {
            map.remove(digest);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.generations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Whether a failed attempt is worth retrying (the connection, not the
/// destination's judgement, failed).
fn retryable(e: &PeerError) -> bool {
    matches!(
        e,
        PeerError::Connect { .. }
            | PeerError::Handshake { .. }
            | PeerError::Http { .. }
            | PeerError::Timeout { .. }
    )
}

/// A peer's refusal keeps its kind (a full site is a conflict, not an
/// outage); a failed exchange is the peer being unavailable.
fn peer_err(site: &str) -> impl FnOnce(PeerError) -> ManagerError {
    let site = site.to_string();
    move |e| match e {
        PeerError::Api {
            status, message, ..
        } => {
            let message = format!("Site {site} refused: {message}");
            match status {
                400 | 422 => ManagerError::Invalid(message),
                403 => ManagerError::Forbidden(message),
                404 => ManagerError::Missing(message),
                409 => ManagerError::Conflict(message),
                _ => ManagerError::Unavailable(message),
            }
        }
        e => ManagerError::Unavailable(format!("Site {site}: {}", crate::http::chain(&e))),
    }
}

impl Manager {
    pub(crate) fn peer_client_for(&self, site: &str) -> Result<PeerClient, ManagerError> {
        let peer = self
            .config
            .peers
            .iter()
            .find(|p| p.site == site)
            .ok_or_else(|| {
                let known: Vec<_> = self.config.peers.iter().map(|p| p.site.as_str()).collect();
                ManagerError::Missing(format!(
                    "Unknown site {site:?} (known peers: {})",
                    known.join(", ")
                ))
            })?;
        let tls = self.peer_tls().ok_or_else(|| {
            ManagerError::Unavailable(
                "This site has no TLS files: talking to other sites needs [tls] in the site config"
                    .into(),
            )
        })?;
        PeerClient::new(&tls, peer.address, site).map_err(peer_err(site))
    }

    /// Copies cached image `image` to site `push.to`.
    pub async fn push_image(
        &self,
        image: &str,
        push: ImagePush,
    ) -> Result<ImagePushReport, ManagerError> {
        let started = Instant::now();
        let cached = self.images.resolve(image)?;
        let client = self.peer_client_for(&push.to)?;
        let digest = cached.meta.digest.clone();
        let file_len = std::fs::metadata(&cached.path)
            .map_err(|source| ManagerError::Io {
                what: format!("Cannot read {}", cached.path.display()),
                source,
            })?
            .len();
        let status_path = format!("/v1/peer/images/{digest}");
        let mut report = ImagePushReport {
            digest: digest.clone(),
            to: push.to.clone(),
            already_present: false,
            resumed_from: 0,
            file_bytes: file_len,
            wire_bytes: 0,
            attempts: 0,
            total_ms: 0,
        };
        let mut backoff = RETRY_BACKOFF;
        loop {
            report.attempts += 1;
            let attempt = async {
                let status: PeerImageStatus = client
                    .request_json(Method::GET, &status_path, None::<&()>, STATUS_TIMEOUT)
                    .await?;
                if status.present {
                    return Ok(Some(status));
                }
                // Where this attempt starts: what an earlier push, or an
                // earlier attempt of this one, left there.
                report.resumed_from = report.resumed_from.max(status.partial_bytes);
                self.upload(
                    &client,
                    &cached,
                    file_len,
                    status.partial_bytes,
                    &mut report.wire_bytes,
                )
                .await
                .map(|()| None)
            }
            .await;
            match attempt {
                Ok(present) => {
                    report.already_present = present.is_some() && report.wire_bytes == 0;
                    break;
                }
                Err(e) if retryable(&e) && report.attempts < ATTEMPTS => {
                    tracing::warn!(%digest, to = %push.to, attempt = report.attempts, error = %crate::http::chain(&e), "image push interrupted; resuming");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
                Err(e) => return Err(peer_err(&push.to)(e)),
            }
        }
        report.total_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        tracing::info!(%digest, to = %push.to, file_bytes = file_len, wire_bytes = report.wire_bytes, attempts = report.attempts, "image pushed");
        Ok(report)
    }

    /// One upload attempt from `offset` to the end of the file.
    async fn upload(
        &self,
        client: &PeerClient,
        image: &CachedImage,
        file_len: u64,
        offset: u64,
        wire_bytes: &mut u64,
    ) -> Result<(), PeerError> {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(READ_AHEAD);
        let path = image.path.clone();
        let sent = Arc::new(AtomicU64::new(0));
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let counter = sent.clone();
        let all_read = done.clone();
        let reader = tokio::task::spawn_blocking(move || {
            let read = (|| -> std::io::Result<()> {
                let mut file = std::fs::File::open(&path)?;
                file.seek(SeekFrom::Start(offset))?;
                let mut buf = vec![0u8; CHUNK];
                loop {
                    let n = read_full(&mut file, &mut buf)?;
                    if n == 0 {
                        all_read.store(true, Ordering::Relaxed);
                        return Ok(());
                    }
                    let frame = stream::encode(&buf[..n]).map_err(std::io::Error::other)?;
                    counter.fetch_add(frame.len() as u64, Ordering::Relaxed);
                    let handed = tx.blocking_send(Ok(Bytes::from(frame)));
                    if handed.is_err() {
                        return Ok(()); // the request ended
                    }
                }
            })();
            if let Err(e) = read {
                let _ = tx.blocking_send(Err(e));
            }
        });
        let query = PeerImageUpload {
            offset,
            file_len,
            name: image.meta.name.clone(),
            format: image.meta.format.clone(),
            firmware: image.meta.firmware,
            virtual_bytes: image.meta.virtual_bytes,
        };
        let path = format!(
            "/v1/peer/images/{}?{}",
            image.meta.digest,
            upload_query(&query)
        );
        let request = client.request_body::<_, ImageInfo>(
            Method::PUT,
            &path,
            "application/octet-stream",
            StreamBody::new(frames(rx)),
            UPLOAD_TIMEOUT,
        );
        // A dead path must not hang the push: a stuck upload ends as a
        // timeout, and the next attempt resumes.
        let result = tokio::select! {
            r = request => r,
            () = stalled(&sent, &done) => Err(PeerError::Timeout {
                site: client.site().to_string(),
                timeout: STALL,
            }),
        };
        reader.abort();
        *wire_bytes += sent.load(Ordering::Relaxed);
        result.map(|_| ())
    }

    /// What this site holds of image `digest` (peer route).
    pub fn peer_image_status(&self, digest: &str) -> Result<PeerImageStatus, ManagerError> {
        if !edgemig_api::images::is_digest(digest) {
            return Err(ManagerError::Invalid(format!("Invalid digest {digest:?}")));
        }
        let dir = self.images.dir();
        std::fs::create_dir_all(dir).map_err(|source| ManagerError::Io {
            what: format!("Cannot create {}", dir.display()),
            source,
        })?;
        Ok(PeerImageStatus {
            present: self.images.get(digest).is_some(),
            partial_bytes: self.images.partial_bytes(digest),
            free_bytes: free_bytes(dir).unwrap_or(0),
        })
    }

    /// Receives image `digest` from another site (peer route): checks room,
    /// writes the chunks as they come, verifies the digest, admits it.
    pub async fn receive_image<S, E>(
        &self,
        digest: &str,
        upload: PeerImageUpload,
        mut body: S,
    ) -> Result<ImageInfo, ManagerError>
    where
        S: futures_util::Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::error::Error + Send + Sync + 'static,
    {
        let status = self.peer_image_status(digest)?;
        if let Some(image) = self.images.get(digest) {
            return self.image_info(image);
        }
        let needed = upload.file_len.saturating_sub(upload.offset);
        if needed.saturating_add(SPACE_MARGIN) > status.free_bytes {
            return Err(ManagerError::Conflict(format!(
                "Site {} has no room for image {}: it needs {} MiB, {} MiB are free",
                self.config.site,
                upload.name,
                needed.div_ceil(1 << 20),
                status.free_bytes >> 20
            )));
        }
        let meta = ImageMeta {
            digest: digest.to_string(),
            name: upload.name,
            format: upload.format,
            virtual_bytes: upload.virtual_bytes,
            firmware: upload.firmware,
        };
        let generation = self.receiving.begin(digest);
        let received = async {
            let mut partial = self.images.receive(meta, upload.file_len, upload.offset)?;
            let mut decoder = Decoder::default();
            loop {
                let next = tokio::time::timeout(RECEIVE_IDLE, body.next())
                    .await
                    .map_err(|_| ImageError::Invalid("The image upload stalled".into()))?;
                let Some(bytes) = next else { break };
                let bytes = bytes.map_err(|e| ImageError::Io {
                    what: "The image upload broke off".into(),
                    source: std::io::Error::other(e),
                })?;
                decoder.push(&bytes);
                while let Some(chunk) = decoder.next_chunk().map_err(|e| {
                    ImageError::Invalid(format!("Bad image stream: {}", crate::http::chain(&e)))
                })? {
                    if !self.receiving.current(digest, generation) {
                        return Err(ImageError::Invalid(
                            "A newer upload of this image took over".into(),
                        ));
                    }
                    tokio::task::block_in_place(|| partial.write(&chunk))?;
                }
            }
            if decoder.has_leftover() {
                return Err(ImageError::Invalid(
                    "The image upload ended inside a chunk".into(),
                ));
            }
            tokio::task::spawn_blocking(move || partial.finish())
                .await
                .map_err(|e| ImageError::Io {
                    what: "Image verification task failed".into(),
                    source: std::io::Error::other(e.to_string()),
                })?
        }
        .await;
        self.receiving.end(digest, generation);
        let image = received?;
        tracing::info!(digest, name = %image.meta.name, "image received");
        self.image_info(image)
    }
}

/// Reads until `buf` is full or the file ends.
fn read_full(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = file.read(&mut buf[filled..])?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

/// The frames of `rx` as a body stream.
fn frames(
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Frame<Bytes>, std::io::Error>> + Send + 'static {
    futures_util::stream::unfold(rx, |mut rx| async move {
        let item = rx.recv().await?;
        Some((item.map(Frame::data), rx))
    })
}

/// Resolves when an upload is stuck: no chunk taken for [`STALL`] while
/// chunks are left, or no answer [`FINISH_LIMIT`] after the last one.
async fn stalled(sent: &AtomicU64, done: &std::sync::atomic::AtomicBool) {
    let mut last = (sent.load(Ordering::Relaxed), Instant::now());
    let mut finished_at: Option<Instant> = None;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = sent.load(Ordering::Relaxed);
        if now != last.0 {
            last = (now, Instant::now());
        }
        if done.load(Ordering::Relaxed) {
            let at = *finished_at.get_or_insert_with(Instant::now);
            if at.elapsed() >= FINISH_LIMIT {
                return;
            }
        } else if last.1.elapsed() >= STALL {
            return;
        }
    }
}

/// The query string of an upload (names are `[A-Za-z0-9._-]`, digests hex).
fn upload_query(q: &PeerImageUpload) -> String {
    format!(
        "offset={}&file_len={}&name={}&format={}&firmware={}&virtual_bytes={}",
        q.offset, q.file_len, q.name, q.format, q.firmware, q.virtual_bytes
    )
}
