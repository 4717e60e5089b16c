//! Measurement bookkeeping of the client: per-second lines, the final
//! summary, percentiles and the longest stall without progress.

use serde::Serialize;
use std::time::{Duration, Instant};

/// One per-second line of `client --json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tick {
    /// Milliseconds since the start of the measurement.
    pub t_ms: u64,
    /// Echo mode: mean RTT of the probes answered in this second
    /// (`null` when none was answered).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<Option<f64>>,
    /// Bulk/upload mode: throughput in this second, Mbit/s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mbit: Option<f64>,
    /// Connection errors so far (cumulative).
    pub errors: u64,
}

/// The final line of `client --json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// `echo`, `bulk` or `upload`.
    pub mode: String,
    /// Length of the measurement, ms.
    pub duration_ms: u64,
    /// Payload bytes moved (echo: bytes echoed back).
    pub bytes: u64,
    /// Mean throughput, Mbit/s.
    pub mbit: f64,
    /// Median RTT (echo mode only).
    pub rtt_ms_p50: Option<f64>,
    /// Largest RTT (echo mode only).
    pub rtt_ms_max: Option<f64>,
    /// Longest time without progress (no echo answer / no byte moved), ms.
    pub max_stall_ms: u64,
    /// Connection errors (each one broke the connection; the client
    /// reconnected while time remained).
    pub errors: u64,
    /// Echo probes answered (0 in other modes).
    pub probes: u64,
    /// Protocol of the (last) socket: `mptcp` or `tcp`.
    pub proto: String,
}

/// Running counters of one measurement.
#[derive(Debug)]
pub struct Meter {
    start: Instant,
    last_progress: Instant,
    max_stall: Duration,
    bytes: u64,
    rtts_ms: Vec<f64>,
    errors: u64,
    // Current second.
    tick_start: Instant,
    tick_bytes: u64,
    tick_rtts: Vec<f64>,
}

impl Meter {
    /// Starts measuring now.
    pub fn new(start: Instant) -> Self {
        Self {
            start,
            last_progress: start,
            max_stall: Duration::ZERO,
            bytes: 0,
            rtts_ms: Vec::new(),
            errors: 0,
            tick_start: start,
            tick_bytes: 0,
            tick_rtts: Vec::new(),
        }
    }

    /// Records progress at `now`: `bytes` moved, and an RTT for echo.
    pub fn progress(&mut self, now: Instant, bytes: u64, rtt: Option<Duration>) {
        self.note_stall(now);
        self.last_progress = now;
        self.bytes += bytes;
        self.tick_bytes += bytes;
        if let Some(rtt) = rtt {
            let ms = rtt.as_secs_f64() * 1000.0;
            self.rtts_ms.push(ms);
            self.tick_rtts.push(ms);
        }
    }

    /// Records a broken connection.
    pub fn error(&mut self) {
        self.errors += 1;
    }

    /// Connection errors so far.
    pub fn errors(&self) -> u64 {
        self.errors
    }

    fn note_stall(&mut self, now: Instant) {
        let gap = now.saturating_duration_since(self.last_progress);
        self.max_stall = self.max_stall.max(gap);
    }

    /// Closes the current second at `now` and returns its line.
    pub fn tick(&mut self, now: Instant, echo: bool) -> Tick {
        let secs = now
            .saturating_duration_since(self.tick_start)
            .as_secs_f64()
            .max(1e-9);
        let tick = Tick {
            t_ms: millis(now.saturating_duration_since(self.start)),
            rtt_ms: echo.then(|| mean(&self.tick_rtts)),
            mbit: (!echo).then(|| self.tick_bytes as f64 * 8.0 / secs / 1e6),
            errors: self.errors,
        };
        self.tick_start = now;
        self.tick_bytes = 0;
        self.tick_rtts.clear();
        tick
    }

    /// The summary at the end (`now`).
    pub fn summary(&mut self, now: Instant, mode: &str, proto: &str) -> Summary {
        self.note_stall(now);
        let elapsed = now.saturating_duration_since(self.start);
        let secs = elapsed.as_secs_f64().max(1e-9);
        let mut sorted = self.rtts_ms.clone();
        sorted.sort_by(f64::total_cmp);
        Summary {
            mode: mode.to_string(),
            duration_ms: millis(elapsed),
            bytes: self.bytes,
            mbit: self.bytes as f64 * 8.0 / secs / 1e6,
            rtt_ms_p50: percentile(&sorted, 50.0),
            rtt_ms_max: sorted.last().copied(),
            max_stall_ms: millis(self.max_stall),
            errors: self.errors,
            probes: self.rtts_ms.len() as u64,
            proto: proto.to_string(),
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[1.0], 50.0), Some(1.0));
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 50.0), Some(2.0));
        assert_eq!(percentile(&[1.0, 2.0, 3.0], 50.0), Some(2.0));
    }

    #[test]
    fn stall_and_json_shape() {
        let t0 = Instant::now();
        let mut m = Meter::new(t0);
        m.progress(
            t0 + Duration::from_millis(10),
            16,
            Some(Duration::from_millis(2)),
        );
        m.progress(
            t0 + Duration::from_millis(510),
            16,
            Some(Duration::from_millis(4)),
        );
        let tick = m.tick(t0 + Duration::from_millis(1000), true);
        let line = serde_json::to_string(&tick).unwrap();
        assert_eq!(line, r#"{"t_ms":1000,"rtt_ms":3.0,"errors":0}"#);
        let tick = m.tick(t0 + Duration::from_millis(2000), true);
        assert_eq!(
            serde_json::to_string(&tick).unwrap(),
            r#"{"t_ms":2000,"rtt_ms":null,"errors":0}"#
        );
        let s = m.summary(t0 + Duration::from_millis(2000), "echo", "mptcp");
        assert_eq!(s.max_stall_ms, 1490);
        assert_eq!(s.rtt_ms_max, Some(4.0));
        assert_eq!(s.bytes, 32);
        let mut b = Meter::new(t0);
        b.progress(t0 + Duration::from_millis(500), 125_000, None);
        let tick = b.tick(t0 + Duration::from_millis(1000), false);
        assert_eq!(
            serde_json::to_string(&tick).unwrap(),
            r#"{"t_ms":1000,"mbit":1.0,"errors":0}"#
        );
    }
}
