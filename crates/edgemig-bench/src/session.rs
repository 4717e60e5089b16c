//! A client's long-lived MPTCP echo session (the traffic tool in a
//! namespace), its per-second JSON lines collected as they come, so RTT,
//! errors and stalls can be read for any time window while it runs.
//!
//! The session probes every [`DEFAULT_INTERVAL_MS`] (one probe in flight
//! at a time). Each per-second line carries the gaps between consecutive
//! answers that ended in that second and the gap still open at its end
//! (`gaps_ms`, `open_gap_ms`, see `edgemig-guest`'s `stats`), which places
//! every answer in time to the millisecond: a stall is the longest time
//! without an answer, not a count of silent seconds.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use crate::tools::TrafficTool;

/// Echo probe interval of a session, ms.
pub const DEFAULT_INTERVAL_MS: u64 = 10;

/// How long the client runs at most, s (the session ends it when dropped).
const SESSION_SECONDS: u64 = 3600;

/// Time without an answered probe, ms: the longest and the 99th percentile
/// (nearest rank) of the gaps between consecutive answers, the gap still
/// open at the window's end included.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stall {
    /// Longest gap, ms.
    pub max_ms: u64,
    /// 99th percentile of the gaps, ms.
    pub p99_ms: u64,
}

/// Alice's long-lived echo session, its per-second lines collected.
pub struct Session {
    /// When it started.
    pub started: Instant,
    child: Child,
    lines: Arc<Mutex<Vec<(Instant, Value)>>>,
}

impl Session {
    /// Starts the echo client in `netns` against `target`, probing every
    /// [`DEFAULT_INTERVAL_MS`].
    pub fn start(tool: &TrafficTool, netns: &str, target: &str) -> Result<Self, std::io::Error> {
        Self::start_with_interval(tool, netns, target, DEFAULT_INTERVAL_MS)
    }

    /// Starts the echo client probing every `interval_ms`.
    pub fn start_with_interval(
        tool: &TrafficTool,
        netns: &str,
        target: &str,
        interval_ms: u64,
    ) -> Result<Self, std::io::Error> {
        let mut child = Command::new("ip")
            .args(["netns", "exec", netns])
            .arg(&tool.binary)
            .args(["client", "--connect", target, "echo", "--duration"])
            .arg(SESSION_SECONDS.to_string())
            .arg("--interval-ms")
            .arg(interval_ms.max(1).to_string())
            .arg("--json")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        if let Some(out) = child.stdout.take() {
            let sink = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if let Ok(v) = serde_json::from_str::<Value>(&line) {
                        sink.lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .push((Instant::now(), v));
                    }
                }
            });
        }
        Ok(Self {
            started: Instant::now(),
            child,
            lines,
        })
    }

    /// The lines so far, with when each arrived.
    pub fn snapshot(&self) -> Vec<(Instant, Value)> {
        self.lines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Median RTT of the lines in `[from, to)`.
    pub fn rtt_between(&self, from: Instant, to: Instant) -> f64 {
        let mut rtts: Vec<f64> = self
            .snapshot()
            .iter()
            .filter(|(t, _)| *t >= from && *t < to)
            .filter_map(|(_, v)| v["rtt_ms"].as_f64())
            .collect();
        rtts.sort_by(f64::total_cmp);
        rtts.get(rtts.len() / 2).copied().unwrap_or(f64::NAN)
    }

    /// Connection errors so far.
    pub fn errors(&self) -> u64 {
        self.snapshot()
            .iter()
            .filter_map(|(_, v)| v["errors"].as_u64())
            .max()
            .unwrap_or(0)
    }

    /// The stall the client saw in `[from, to)`: the gaps closed by answers
    /// that came in the window, and the gap open at its end (up to the last
    /// line received when `to` is later). Zero without data in the window.
    pub fn stall_between(&self, from: Instant, to: Instant) -> Stall {
        Timeline::of(&self.snapshot()).stall(from, to)
    }

    /// The stall over the whole session so far.
    pub fn stall(&self) -> Stall {
        self.stall_between(self.started, Instant::now())
    }

    /// Longest time without an answered probe over the whole session, ms.
    pub fn max_stall_ms(&self) -> u64 {
        self.stall().max_ms
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every answer of a session placed in time, from its per-second lines.
#[derive(Debug, Default)]
struct Timeline {
    /// When the client started measuring (the first gap counts from it).
    start: Option<Instant>,
    /// Each answer: when it came and the gap it closed, ms; in order.
    answers: Vec<(Instant, u64)>,
    /// The end of the last line: nothing is known after it.
    known_until: Option<Instant>,
}

impl Timeline {
    /// Reads the echo lines (those with `t_ms`, `gaps_ms`, `open_gap_ms`).
    /// A line's own clock (`t_ms` since the client's start) is mapped to
    /// this process's by the earliest-arriving line (the least delayed).
    fn of(lines: &[(Instant, Value)]) -> Self {
        let echo: Vec<(Instant, u64, u64, Vec<u64>)> = lines
            .iter()
            .filter_map(|(at, v)| {
                let t = v["t_ms"].as_u64()?;
                let open = v["open_gap_ms"].as_u64()?;
                let gaps = v["gaps_ms"]
                    .as_array()?
                    .iter()
                    .filter_map(Value::as_u64)
                    .collect();
                Some((*at, t, open, gaps))
            })
            .collect();
        let Some(start) = echo
            .iter()
            .filter_map(|(at, t, _, _)| at.checked_sub(Duration::from_millis(*t)))
            .min()
        else {
            return Self::default();
        };
        let mut answers = Vec::new();
        let mut known_until = start;
        for (_, t, open, gaps) in &echo {
            let end = start + Duration::from_millis(*t);
            known_until = known_until.max(end);
            let mut at = end
                .checked_sub(Duration::from_millis(*open))
                .unwrap_or(start)
                .max(start);
            let mut these = Vec::with_capacity(gaps.len());
            for gap in gaps.iter().rev() {
                these.push((at, *gap));
                at = at
                    .checked_sub(Duration::from_millis(*gap))
                    .unwrap_or(start)
                    .max(start);
            }
            answers.extend(these.into_iter().rev());
        }
        Self {
            start: Some(start),
            answers,
            known_until: Some(known_until),
        }
    }

    fn stall(&self, from: Instant, to: Instant) -> Stall {
        let (Some(start), Some(known_until)) = (self.start, self.known_until) else {
            return Stall::default();
        };
        let end = to.min(known_until);
        if end <= from {
            return Stall::default();
        }
        let mut gaps: Vec<u64> = self
            .answers
            .iter()
            .filter(|(at, _)| *at >= from && *at < to)
            .map(|(_, gap)| *gap)
            .collect();
        let last = self
            .answers
            .iter()
            .rev()
            .map(|(at, _)| *at)
            .find(|at| *at <= end)
            .unwrap_or(start);
        let open = end.saturating_duration_since(last);
        gaps.push(u64::try_from(open.as_millis()).unwrap_or(u64::MAX));
        gaps.sort_unstable();
        let rank = (gaps.len() * 99).div_ceil(100).clamp(1, gaps.len());
        Stall {
            max_ms: gaps.last().copied().unwrap_or(0),
            p99_ms: gaps[rank - 1],
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Lines of a client started at `t0` that got an answer every 10 ms
    /// except for a freeze from 1500 to 2400 ms; each line arrives `late`
    /// after its second ended (the first line least late).
    fn frozen_session(t0: Instant) -> Vec<(Instant, Value)> {
        let mut answers: Vec<u64> = (1..=150).map(|i| i * 10).collect();
        answers.extend((0..=60).map(|i| 2400 + i * 10));
        let mut lines = Vec::new();
        let mut last = 0;
        for second in 1..=3u64 {
            let end = second * 1000;
            let mut gaps = Vec::new();
            for a in answers.iter().filter(|a| **a < end && **a >= end - 1000) {
                gaps.push(a - last);
                last = *a;
            }
            let late = Duration::from_millis(if second == 1 { 2 } else { 7 });
            lines.push((
                t0 + Duration::from_millis(end) + late,
                json!({"t_ms": end, "rtt_ms": 1.0, "errors": 0, "gaps_ms": gaps, "open_gap_ms": end - last}),
            ));
        }
        lines
    }

    #[test]
    fn a_freeze_is_measured_to_the_millisecond() {
        let t0 = Instant::now();
        let lines = frozen_session(t0);
        let tl = Timeline::of(&lines);
        let ms = |n: u64| t0 + Duration::from_millis(n);
        // The whole session: the 900 ms freeze.
        let all = tl.stall(t0, ms(10_000));
        assert_eq!(all.max_ms, 900);
        assert_eq!(all.p99_ms, 10);
        // Only the first second: 10 ms gaps.
        assert_eq!(tl.stall(t0, ms(999)).max_ms, 10);
        // A window ending inside the freeze sees it open so far.
        let open = tl.stall(ms(1200), ms(2000));
        assert!((498..=502).contains(&open.max_ms), "{open:?}");
        // A window starting inside the freeze sees it closed whole.
        assert_eq!(tl.stall(ms(2000), ms(3000)).max_ms, 900);
        // A window after the data: nothing known.
        assert_eq!(tl.stall(ms(5000), ms(6000)), Stall::default());
        // Answers are placed where they came (the first line's 2 ms of
        // delay is the clock offset).
        let (first, gap) = tl.answers[0];
        assert_eq!(gap, 10);
        assert_eq!(first.duration_since(t0), Duration::from_millis(12));
    }

    #[test]
    fn no_answer_at_all_is_one_open_gap() {
        let t0 = Instant::now();
        let lines: Vec<(Instant, Value)> = (1..=3u64)
            .map(|s| {
                (
                    t0 + Duration::from_millis(s * 1000),
                    json!({"t_ms": s * 1000, "rtt_ms": null, "errors": 0, "gaps_ms": [], "open_gap_ms": s * 1000}),
                )
            })
            .collect();
        let tl = Timeline::of(&lines);
        let s = tl.stall(t0, t0 + Duration::from_secs(60));
        assert_eq!(
            s,
            Stall {
                max_ms: 3000,
                p99_ms: 3000
            }
        );
        // Lines without the gap fields (another mode, a summary) are not
        // echo lines: nothing to go by.
        let old = vec![(t0, json!({"t_ms": 1000, "rtt_ms": 1.0, "errors": 0}))];
        assert_eq!(
            Timeline::of(&old).stall(t0, t0 + Duration::from_secs(9)),
            Stall::default()
        );
    }
}
