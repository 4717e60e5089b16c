//! A client's long-lived MPTCP echo session (the traffic tool in a
//! namespace), its per-second JSON lines collected as they come, so RTT and
//! errors can be read for any time window while it runs.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::Value;

use crate::tools::TrafficTool;

/// Alice's long-lived echo session, its per-second lines collected.
pub struct Session {
    /// When it started.
    pub started: Instant,
    child: Child,
    lines: Arc<Mutex<Vec<(Instant, Value)>>>,
}

impl Session {
    pub fn start(tool: &TrafficTool, netns: &str, target: &str) -> Result<Self, std::io::Error> {
        let mut child = Command::new("ip")
            .args(["netns", "exec", netns])
            .arg(&tool.binary)
            .args([
                "client",
                "--connect",
                target,
                "echo",
                "--duration",
                "600",
                "--interval-ms",
                "100",
                "--json",
            ])
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

    pub fn errors(&self) -> u64 {
        self.snapshot()
            .iter()
            .filter_map(|(_, v)| v["errors"].as_u64())
            .max()
            .unwrap_or(0)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Session {
    /// Longest run of seconds in which no probe was answered, in ms.
    pub fn max_stall_ms(&self) -> u64 {
        let mut longest = 0u64;
        let mut run = 0u64;
        for (_, v) in self.snapshot() {
            if v["rtt_ms"].is_null() && v.get("t_ms").is_some() {
                run += 1000;
                longest = longest.max(run);
            } else {
                run = 0;
            }
        }
        longest
    }
}
