//! Alice's live clients during the soak, both the measuring client
//! (`edgemig-guest client`, MPTCP) in alice's namespace against the VM's
//! echo/bulk service:
//!
//! - echo probes every 10 ms ([`crate::session::Session`]), whose
//!   per-second lines place every answer in time;
//! - a bulk stream (`client bulk`), its per-second lines and stderr
//!   collected.
//!
//! A broken connection is an error the client counts, and it reconnects
//! (to the address it started with). After each migration the soak asks
//! whether each client gets answers (echo) or data (bulk) again; one that
//! does not — broken and unable to reconnect because its address was
//! retired, or *hung*: still connected but moving nothing — is replaced by
//! a new one to the VM's current address, and a hung one is counted (the
//! client itself cannot see it).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::session::Session;
use crate::tools::TrafficTool;

/// Echo probe interval, ms.
pub const PROBE_INTERVAL_MS: u64 = crate::session::DEFAULT_INTERVAL_MS;
/// A per-second line covers the second before it arrived.
const LINE_SPAN: Duration = Duration::from_secs(1);
/// Most stderr lines kept.
const KEEP_MAX: usize = 10_000;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether a line arrived at `at` tells of progress after `since`.
fn after(at: Instant, since: Instant) -> bool {
    at.checked_sub(LINE_SPAN)
        .is_some_and(|start| start >= since)
}

/// Errors counted in `lines` (cumulative `errors`) since `since`.
fn errors_since(lines: &[(Instant, Value)], since: Instant) -> u64 {
    let count = |l: &(Instant, Value)| l.1["errors"].as_u64().unwrap_or(0);
    let before = lines
        .iter()
        .filter(|(at, _)| *at <= since)
        .map(count)
        .max()
        .unwrap_or(0);
    lines
        .iter()
        .map(count)
        .max()
        .unwrap_or(0)
        .saturating_sub(before)
}

/// One client run and when it was replaced.
struct Lived<T> {
    client: T,
    target: SocketAddr,
    replaced: Option<Instant>,
}

/// Alice's echo sessions, oldest first (all alive until dropped).
pub struct Echo {
    tool: TrafficTool,
    netns: String,
    sessions: Vec<Lived<Session>>,
    /// Sessions found hung (connected, no answer, no error).
    pub hung: u32,
}

impl Echo {
    /// Starts the first session to `target`.
    pub fn start(tool: &TrafficTool, netns: &str, target: SocketAddr) -> std::io::Result<Self> {
        let mut echo = Self {
            tool: tool.clone(),
            netns: netns.to_string(),
            sessions: Vec::new(),
            hung: 0,
        };
        echo.replace(target)?;
        Ok(echo)
    }

    /// Ends the current session's turn and starts a new one to `target`.
    fn replace(&mut self, target: SocketAddr) -> std::io::Result<()> {
        let session = Session::start(&self.tool, &self.netns, &target.to_string())?;
        if let Some(cur) = self.sessions.last_mut() {
            cur.replaced = Some(Instant::now());
        }
        self.sessions.push(Lived {
            client: session,
            target,
            replaced: None,
        });
        Ok(())
    }

    /// Sessions started.
    pub fn sessions(&self) -> u32 {
        u32::try_from(self.sessions.len()).unwrap_or(u32::MAX)
    }

    /// Answers received so far (all sessions).
    pub fn answered(&self) -> u64 {
        self.sessions
            .iter()
            .flat_map(|l| l.client.snapshot())
            .filter_map(|(_, v)| v["gaps_ms"].as_array().map(|g| g.len() as u64))
            .sum()
    }

    /// Median of the per-second mean RTTs of all sessions, ms.
    pub fn rtt_ms(&self) -> f64 {
        let mut rtts: Vec<f64> = self
            .sessions
            .iter()
            .flat_map(|l| l.client.snapshot())
            .filter_map(|(_, v)| v["rtt_ms"].as_f64())
            .collect();
        rtts.sort_by(f64::total_cmp);
        rtts.get(rtts.len() / 2).copied().unwrap_or(f64::NAN)
    }

    /// Broken connections so far (all sessions).
    pub fn errors(&self) -> u64 {
        self.sessions.iter().map(|l| l.client.errors()).sum()
    }

    /// When each broken connection was seen (the line that counted it),
    /// and the address its session talked to.
    pub fn breaks(&self) -> Vec<(Instant, SocketAddr)> {
        let mut out = Vec::new();
        for l in &self.sessions {
            let mut seen = 0;
            for (at, v) in l.client.snapshot() {
                let e = v["errors"].as_u64().unwrap_or(0);
                for _ in seen..e {
                    out.push((at, l.target));
                }
                seen = seen.max(e);
            }
        }
        out
    }

    /// Whether the current session got an answer after `since`.
    pub fn answering_since(&self, since: Instant) -> bool {
        self.sessions.last().is_some_and(|l| {
            l.client.snapshot().iter().any(|(at, v)| {
                after(*at, since) && v["gaps_ms"].as_array().is_some_and(|g| !g.is_empty())
            })
        })
    }

    /// Replaces the current session, which got nothing since `since`, by
    /// one to `target`; counts it as hung unless it counted an error.
    pub fn give_up(&mut self, since: Instant, target: SocketAddr) -> std::io::Result<()> {
        if let Some(cur) = self.sessions.last() {
            let broke = errors_since(&cur.client.snapshot(), since) > 0;
            self.hung += u32::from(!broke);
            tracing::warn!(old = %cur.target, new = %target, broke, "soak: echo session replaced");
        }
        self.replace(target)
    }

    /// Longest time without an answer in `[from, to]`, ms: each session
    /// over the part of the window it was the current one.
    pub fn stall_ms(&self, from: Instant, to: Instant) -> u64 {
        self.sessions
            .iter()
            .filter_map(|l| {
                let (start, end) = clip(from, to, l.client.started, l.replaced)?;
                Some(l.client.stall_between(start, end).max_ms)
            })
            .max()
            .unwrap_or(0)
    }
}

/// The part of `[from, to]` within `[started, replaced)`.
fn clip(
    from: Instant,
    to: Instant,
    started: Instant,
    replaced: Option<Instant>,
) -> Option<(Instant, Instant)> {
    let start = from.max(started);
    let end = replaced.map_or(to, |r| r.min(to));
    (end > start).then_some((start, end))
}

/// `edgemig-guest client --connect TARGET bulk` in alice's namespace;
/// killed (by its pid, through the child handle) on drop.
struct BulkClient {
    child: Child,
    lines: Arc<Mutex<Vec<(Instant, Value)>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl BulkClient {
    fn start(tool: &Path, netns: &str, target: SocketAddr) -> std::io::Result<Self> {
        let mut child = Command::new("ip")
            .args(["netns", "exec", netns])
            .arg(tool)
            .args(["client", "--connect", &target.to_string(), "bulk"])
            .args(["--duration", "86400", "--json"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        if let Some(out) = child.stdout.take() {
            let sink = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if let Ok(v) = serde_json::from_str::<Value>(&line) {
                        lock(&sink).push((Instant::now(), v));
                    }
                }
            });
        }
        if let Some(err) = child.stderr.take() {
            let sink = stderr.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    let mut s = lock(&sink);
                    if s.len() < KEEP_MAX {
                        s.push(line);
                    }
                }
            });
        }
        Ok(Self {
            child,
            lines,
            stderr,
        })
    }

    fn lines(&self) -> Vec<(Instant, Value)> {
        lock(&self.lines).clone()
    }
}

impl Drop for BulkClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Alice's bulk streams, oldest first.
pub struct Bulk {
    tool: PathBuf,
    netns: String,
    clients: Vec<Lived<BulkClient>>,
    /// Streams found hung (connected, no data, no error).
    pub hung: u32,
}

impl Bulk {
    /// Starts the first stream to `target`.
    pub fn start(tool: &Path, netns: &str, target: SocketAddr) -> std::io::Result<Self> {
        let mut bulk = Self {
            tool: tool.to_path_buf(),
            netns: netns.to_string(),
            clients: Vec::new(),
            hung: 0,
        };
        bulk.replace(target)?;
        Ok(bulk)
    }

    fn replace(&mut self, target: SocketAddr) -> std::io::Result<()> {
        let client = BulkClient::start(&self.tool, &self.netns, target)?;
        if let Some(cur) = self.clients.last_mut() {
            cur.replaced = Some(Instant::now());
        }
        self.clients.push(Lived {
            client,
            target,
            replaced: None,
        });
        Ok(())
    }

    /// Streams started.
    pub fn streams(&self) -> u32 {
        u32::try_from(self.clients.len()).unwrap_or(u32::MAX)
    }

    /// Broken connections the clients counted.
    pub fn errors(&self) -> u64 {
        self.clients
            .iter()
            .map(|l| {
                l.client
                    .lines()
                    .iter()
                    .filter_map(|(_, v)| v["errors"].as_u64())
                    .max()
                    .unwrap_or(0)
            })
            .sum()
    }

    /// Megabits received (all streams).
    pub fn megabits(&self) -> f64 {
        self.clients
            .iter()
            .flat_map(|l| l.client.lines())
            .filter_map(|(_, v)| v["mbit"].as_f64())
            .sum()
    }

    /// What the clients wrote on stderr.
    pub fn stderr(&self) -> Vec<String> {
        self.clients
            .iter()
            .flat_map(|l| lock(&l.client.stderr).clone())
            .collect()
    }

    /// Whether the current client still runs.
    pub fn running(&mut self) -> bool {
        self.clients
            .last_mut()
            .is_some_and(|l| matches!(l.client.child.try_wait(), Ok(None)))
    }

    /// Whether the current stream received data after `since`.
    pub fn moving_since(&self, since: Instant) -> bool {
        self.clients.last().is_some_and(|l| {
            l.client
                .lines()
                .iter()
                .any(|(at, v)| after(*at, since) && v["mbit"].as_f64().is_some_and(|m| m > 0.0))
        })
    }

    /// Replaces the current stream, which moved nothing since `since`, by
    /// one to `target`; counts it as hung unless it counted an error.
    pub fn give_up(&mut self, since: Instant, target: SocketAddr) -> std::io::Result<()> {
        if let Some(cur) = self.clients.last() {
            let broke = errors_since(&cur.client.lines(), since) > 0;
            self.hung += u32::from(!broke);
            tracing::warn!(old = %cur.target, new = %target, broke, "soak: bulk stream replaced");
        }
        self.replace(target)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn each_session_covers_the_window_while_it_was_current() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        assert_eq!(clip(at(0), at(100), at(10), None), Some((at(10), at(100))));
        assert_eq!(
            clip(at(0), at(100), at(0), Some(at(50))),
            Some((at(0), at(50)))
        );
        assert_eq!(clip(at(60), at(100), at(0), Some(at(50))), None);
        assert_eq!(clip(at(0), at(10), at(20), None), None);
    }

    #[test]
    fn errors_and_progress_are_read_after_a_moment() {
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        let lines = vec![
            (at(1), json!({"errors": 0})),
            (at(2), json!({"errors": 1})),
            (at(3), json!({"errors": 3})),
        ];
        assert_eq!(errors_since(&lines, t0), 3);
        assert_eq!(errors_since(&lines, at(2)), 2);
        assert_eq!(errors_since(&lines, at(5)), 0);
        // A line covers the second before it: the one at 3 s tells of
        // what happened after 2 s, not after 2.5 s.
        assert!(after(at(3), at(2)));
        assert!(!after(at(3), at(2) + Duration::from_millis(500)));
    }
}
