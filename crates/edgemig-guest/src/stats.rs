//! Measurement bookkeeping of the client: per-second lines, the final
//! summary, percentiles, the longest stall without progress and, in echo
//! mode, every gap between consecutive answers (ms), so a reader can tell a
//! 900 ms freeze from a normal second.

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
    /// Echo mode: the gaps (ms, rounded) between consecutive echo answers
    /// that ended in this second, in order; the first gap of the run counts
    /// from its start. Empty when no answer came.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gaps_ms: Option<Vec<u64>>,
    /// Echo mode: the gap still open at the end of this second, i.e. the
    /// time since the last answer (ms, rounded; the whole second and more
    /// when no answer came). Together with `gaps_ms` it places every answer
    /// in time: the last one ended `open_gap_ms` before `t_ms`, each
    /// earlier one its gap before the next.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_gap_ms: Option<u64>,
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
    /// Echo mode: the longest gap between consecutive answers, the gap
    /// still open at the end included, ms (`null` in other modes).
    pub gap_ms_max: Option<u64>,
    /// Echo mode: the 99th percentile (nearest rank) of the same gaps, ms
    /// (`null` in other modes).
    pub gap_ms_p99: Option<u64>,
}

/// Running counters of one measurement.
#[derive(Debug)]
pub struct Meter {
    start: Instant,
    echo: bool,
    last_progress: Instant,
    max_stall: Duration,
    bytes: u64,
    rtts_ms: Vec<f64>,
    errors: u64,
    /// When the last echo answer came (the start before the first).
    last_answer: Instant,
    /// Every closed gap between answers, ms.
    gaps_ms: Vec<u64>,
    // Current second.
    tick_start: Instant,
    tick_bytes: u64,
    tick_rtts: Vec<f64>,
    tick_gaps: Vec<u64>,
}

impl Meter {
    /// Starts measuring at `start`; `echo` for echo mode (RTTs and gaps
    /// between answers), else throughput.
    pub fn new(start: Instant, echo: bool) -> Self {
        Self {
            start,
            echo,
            last_progress: start,
            max_stall: Duration::ZERO,
            bytes: 0,
            rtts_ms: Vec::new(),
            errors: 0,
            last_answer: start,
            gaps_ms: Vec::new(),
            tick_start: start,
            tick_bytes: 0,
            tick_rtts: Vec::new(),
            tick_gaps: Vec::new(),
        }
    }

    /// Records progress at `now`: `bytes` moved, and an RTT for echo (an
    /// answer, which closes the gap since the previous one).
    pub fn progress(&mut self, now: Instant, bytes: u64, rtt: Option<Duration>) {
        self.note_stall(now);
        self.last_progress = now;
        self.bytes += bytes;
        self.tick_bytes += bytes;
        if let Some(rtt) = rtt {
            let ms = rtt.as_secs_f64() * 1000.0;
            self.rtts_ms.push(ms);
            self.tick_rtts.push(ms);
            let gap = round_ms(now.saturating_duration_since(self.last_answer));
            self.last_answer = now;
            self.gaps_ms.push(gap);
            self.tick_gaps.push(gap);
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
    pub fn tick(&mut self, now: Instant) -> Tick {
        let echo = self.echo;
        let secs = now
            .saturating_duration_since(self.tick_start)
            .as_secs_f64()
            .max(1e-9);
        let tick = Tick {
            t_ms: millis(now.saturating_duration_since(self.start)),
            rtt_ms: echo.then(|| mean(&self.tick_rtts)),
            mbit: (!echo).then(|| self.tick_bytes as f64 * 8.0 / secs / 1e6),
            errors: self.errors,
            gaps_ms: echo.then(|| std::mem::take(&mut self.tick_gaps)),
            open_gap_ms: echo.then(|| round_ms(now.saturating_duration_since(self.last_answer))),
        };
        self.tick_start = now;
        self.tick_bytes = 0;
        self.tick_rtts.clear();
        self.tick_gaps.clear();
        tick
    }

    /// The summary at the end (`now`).
    pub fn summary(&mut self, now: Instant, mode: &str, proto: &str) -> Summary {
        self.note_stall(now);
        let elapsed = now.saturating_duration_since(self.start);
        let secs = elapsed.as_secs_f64().max(1e-9);
        let mut sorted = self.rtts_ms.clone();
        sorted.sort_by(f64::total_cmp);
        let (gap_ms_max, gap_ms_p99) = if self.echo {
            let mut gaps = self.gaps_ms.clone();
            gaps.push(round_ms(now.saturating_duration_since(self.last_answer)));
            gaps.sort_unstable();
            (gaps.last().copied(), percentile_u64(&gaps, 99.0))
        } else {
            (None, None)
        };
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
            gap_ms_max,
            gap_ms_p99,
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `d` in whole milliseconds, rounded to the nearest.
fn round_ms(d: Duration) -> u64 {
    u64::try_from(d.as_micros().saturating_add(500) / 1000).unwrap_or(u64::MAX)
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

/// Nearest-rank percentile of sorted integers.
pub fn percentile_u64(sorted: &[u64], p: f64) -> Option<u64> {
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
        let mut m = Meter::new(t0, true);
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
        let tick = m.tick(t0 + Duration::from_millis(1000));
        let line = serde_json::to_string(&tick).unwrap();
        assert_eq!(
            line,
            r#"{"t_ms":1000,"rtt_ms":3.0,"errors":0,"gaps_ms":[10,500],"open_gap_ms":490}"#
        );
        let tick = m.tick(t0 + Duration::from_millis(2000));
        assert_eq!(
            serde_json::to_string(&tick).unwrap(),
            r#"{"t_ms":2000,"rtt_ms":null,"errors":0,"gaps_ms":[],"open_gap_ms":1490}"#
        );
        let s = m.summary(t0 + Duration::from_millis(2000), "echo", "mptcp");
        assert_eq!(s.max_stall_ms, 1490);
        assert_eq!(s.rtt_ms_max, Some(4.0));
        assert_eq!(s.bytes, 32);
        // The gap still open at the end counts.
        assert_eq!((s.gap_ms_max, s.gap_ms_p99), (Some(1490), Some(1490)));
        let mut b = Meter::new(t0, false);
        b.progress(t0 + Duration::from_millis(500), 125_000, None);
        let tick = b.tick(t0 + Duration::from_millis(1000));
        assert_eq!(
            serde_json::to_string(&tick).unwrap(),
            r#"{"t_ms":1000,"mbit":1.0,"errors":0}"#
        );
        let s = b.summary(t0 + Duration::from_millis(1000), "bulk", "mptcp");
        assert_eq!((s.gap_ms_max, s.gap_ms_p99), (None, None));
    }

    #[test]
    fn gaps_per_second_place_every_answer() {
        // Answers every 10 ms for 1.5 s, then a 900 ms freeze, then every
        // 10 ms again; lines at each whole second.
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut m = Meter::new(t0, true);
        let mut answers: Vec<u64> = (1..=150).map(|i| i * 10).collect();
        answers.extend((0..=50).map(|i| 2400 + i * 10));
        let mut lines = Vec::new();
        let mut next_tick = 1000;
        for &a in &answers {
            while a >= next_tick {
                lines.push(m.tick(ms(next_tick)));
                next_tick += 1000;
            }
            m.progress(ms(a), 16, Some(Duration::from_millis(1)));
        }
        lines.push(m.tick(ms(3000)));
        let gaps: Vec<&Vec<u64>> = lines.iter().map(|l| l.gaps_ms.as_ref().unwrap()).collect();
        assert_eq!(gaps[0].len(), 99, "answers at 10..990 ms");
        assert!(gaps[0].iter().all(|g| *g == 10));
        assert_eq!(lines[0].open_gap_ms, Some(10));
        // Second 2: answers up to 1500 ms, then silence.
        assert_eq!(gaps[1].len(), 51);
        assert_eq!(lines[1].open_gap_ms, Some(500));
        // Second 3: the 900 ms gap closes at 2400 ms.
        assert_eq!(gaps[2][0], 900);
        assert_eq!(gaps[2].iter().filter(|g| **g == 10).count(), 50);
        assert_eq!(lines[2].open_gap_ms, Some(100));
        // Going back from each line's end by its open gap and then by each
        // gap recovers every answer's time.
        let mut placed = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            let mut at = (i as u64 + 1) * 1000 - l.open_gap_ms.unwrap();
            let mut these = Vec::new();
            for g in l.gaps_ms.as_ref().unwrap().iter().rev() {
                these.push(at);
                at -= g;
            }
            these.reverse();
            placed.extend(these);
        }
        assert_eq!(placed, answers);
        let s = m.summary(ms(3000), "echo", "mptcp");
        assert_eq!(s.gap_ms_max, Some(900));
        // 202 gaps (201 answers + the open one): the 99th percentile is
        // the 200th smallest, still 10 ms; one freeze is the maximum.
        assert_eq!(s.gap_ms_p99, Some(10));
        assert_eq!(s.probes, 201);
    }

    #[test]
    fn integer_percentiles_and_rounding() {
        assert_eq!(percentile_u64(&[], 99.0), None);
        assert_eq!(percentile_u64(&[5], 99.0), Some(5));
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile_u64(&v, 99.0), Some(99));
        assert_eq!(round_ms(Duration::from_micros(1499)), 1);
        assert_eq!(round_ms(Duration::from_micros(1500)), 2);
    }
}
