//! Pure packet logic of one direction of an emulated path: drop decisions
//! (down, loss, drop-tail queue limit), serialization at the link rate,
//! propagation delay plus jitter, FIFO release. Time is always passed in
//! (`Instant`s), never read, so everything is deterministic and testable.

mod params;
mod rng;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::Serialize;

pub use params::{LinkParams, MIN_QUEUE_BYTES, ParamsError, ParamsView};
pub use rng::XorShift;

/// Anything with a frame length in bytes (`usize` itself for pure tests).
pub trait FrameLen {
    fn frame_len(&self) -> usize;
}

impl FrameLen for usize {
    fn frame_len(&self) -> usize {
        *self
    }
}

impl FrameLen for Vec<u8> {
    fn frame_len(&self) -> usize {
        self.len()
    }
}

/// What happened to an offered frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Queued,
    DroppedLoss,
    DroppedQueueFull,
    DroppedDown,
}

/// Counters of one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DirStats {
    pub frames_forwarded: u64,
    pub bytes_forwarded: u64,
    pub dropped_loss: u64,
    pub dropped_queue: u64,
    pub dropped_down: u64,
    pub queued_frames: u64,
    pub queued_bytes: u64,
}

struct Held<P> {
    release: Instant,
    frame: P,
}

/// State machine of one direction, holding frames of type `P`.
pub struct Direction<P> {
    params: LinkParams,
    limit: u64,
    queue: VecDeque<Held<P>>,
    held_bytes: u64,
    last_departure: Option<Instant>,
    last_release: Option<Instant>,
    rng: XorShift,
    stats: DirStats,
}

impl<P: FrameLen> Direction<P> {
    /// A direction with `params` (validated) and an RNG seed.
    pub fn new(params: LinkParams, seed: u64) -> Result<Self, ParamsError> {
        params.validate()?;
        Ok(Self {
            limit: params.effective_queue_limit(),
            params,
            queue: VecDeque::new(),
            held_bytes: 0,
            last_departure: None,
            last_release: None,
            rng: XorShift::new(seed),
            stats: DirStats::default(),
        })
    }

    /// Current parameters.
    pub fn params(&self) -> &LinkParams {
        &self.params
    }

    /// Counters, including the current queue occupancy.
    pub fn stats(&self) -> DirStats {
        DirStats {
            queued_frames: self.queue.len() as u64,
            queued_bytes: self.held_bytes,
            ..self.stats
        }
    }

    /// Changes the parameters at run time. Going down drops every held frame
    /// (returned so buffers can be recycled); frames already held keep their
    /// release times otherwise.
    pub fn set_params(&mut self, params: LinkParams) -> Result<Vec<P>, ParamsError> {
        params.validate()?;
        self.params = params;
        self.limit = params.effective_queue_limit();
        if params.up {
            return Ok(Vec::new());
        }
        let dropped: Vec<P> = self.queue.drain(..).map(|h| h.frame).collect();
        self.stats.dropped_down += dropped.len() as u64;
        self.held_bytes = 0;
        self.last_departure = None;
        self.last_release = None;
        Ok(dropped)
    }

    /// Offers a frame arriving at `now`. On a drop the frame is handed back.
    pub fn offer(&mut self, now: Instant, frame: P) -> (Verdict, Option<P>) {
        let len = frame.frame_len();
        if !self.params.up {
            self.stats.dropped_down += 1;
            return (Verdict::DroppedDown, Some(frame));
        }
        if self.params.loss > 0.0 && self.rng.next_f64() < self.params.loss {
            self.stats.dropped_loss += 1;
            return (Verdict::DroppedLoss, Some(frame));
        }
        if self.held_bytes + len as u64 > self.limit {
            self.stats.dropped_queue += 1;
            return (Verdict::DroppedQueueFull, Some(frame));
        }
        let start = self.last_departure.map_or(now, |d| d.max(now));
        let departure = start + self.params.serialization(len);
        self.last_departure = Some(departure);
        let mut release = departure + self.sample_delay();
        if let Some(prev) = self.last_release {
            release = release.max(prev);
        }
        self.last_release = Some(release);
        self.held_bytes += len as u64;
        self.queue.push_back(Held { release, frame });
        (Verdict::Queued, None)
    }

    /// `delay ± jitter`, never below zero.
    fn sample_delay(&mut self) -> Duration {
        let jitter = self.params.jitter;
        if jitter.is_zero() {
            return self.params.delay;
        }
        let span = jitter.as_nanos() as f64;
        let offset = (self.rng.next_f64() * 2.0 - 1.0) * span;
        let total = self.params.delay.as_nanos() as f64 + offset;
        Duration::from_nanos(total.max(0.0) as u64)
    }

    /// When the head frame is due (never earlier than `now`); `None` if empty.
    pub fn next_release(&self, now: Instant) -> Option<Instant> {
        self.queue.front().map(|h| h.release.max(now))
    }

    /// Takes the head frame if it is due at `now` (call until `None`).
    pub fn pop_ready(&mut self, now: Instant) -> Option<P> {
        if self.queue.front()?.release > now {
            return None;
        }
        let held = self.queue.pop_front()?;
        let len = held.frame.frame_len() as u64;
        self.held_bytes = self.held_bytes.saturating_sub(len);
        self.stats.frames_forwarded += 1;
        self.stats.bytes_forwarded += len;
        Some(held.frame)
    }
}

impl Direction<usize> {
    /// Length-only convenience for pure simulations: offers a frame of
    /// `frame_len` bytes.
    pub fn enqueue(&mut self, now: Instant, frame_len: usize) -> Verdict {
        self.offer(now, frame_len).0
    }
}
