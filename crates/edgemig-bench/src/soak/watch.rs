//! The split-brain watch of the soak: every 100 ms, for the whole soak,
//! both sites are looked at together, two ways:
//!
//! - by their agents: `GET /v1/vms/VM` says `running` at both sites;
//! - by the QEMU processes: at both sites the pid file
//!   `STATE_DIR/vms/VM/qemu.pid` names a live QEMU of the VM, and that
//!   QEMU runs the guest. Whether it runs is asked of QEMU itself
//!   (`query-status` over `STATE_DIR/vms/VM/qmp.sock`) when the site's
//!   agent does not answer (it was killed: the QMP socket takes one client
//!   at a time, and a live agent holds it); otherwise the agent's view of
//!   that QEMU is taken.
//!
//! A moment is a split brain when either way shows the VM running at both
//! sites; consecutive split samples are one episode.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use edgemig_api::{ApiClient, ErrorCode, VmState};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::task::JoinHandle;

/// Time between two looks at both sites.
pub const INTERVAL: Duration = Duration::from_millis(100);
/// Longest wait for an agent's answer in one look.
const AGENT_TIMEOUT: Duration = Duration::from_millis(500);
/// Longest QMP exchange.
const QMP_TIMEOUT: Duration = Duration::from_millis(300);
/// Episodes described one by one in the report.
const KEEP_EPISODES: usize = 20;

/// One site as the watch sees it.
#[derive(Debug, Clone)]
pub struct SiteWatch {
    /// Site name.
    pub name: String,
    /// Its agent's API socket.
    pub api_socket: PathBuf,
    /// Its agent's state directory.
    pub state_dir: PathBuf,
}

/// The agent's answer about the VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentView {
    /// The agent holds the VM in this state.
    State(VmState),
    /// The agent does not have the VM.
    Absent,
    /// The agent did not answer (killed, restarting, or too slow).
    Unreachable,
}

/// What one look at one site found.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Look {
    agent: AgentView,
    /// Live QEMU of the VM named by the pid file.
    qemu: Option<u32>,
    /// QEMU's own `query-status` (`running`, status), asked only while
    /// the agent did not answer.
    qmp: Option<(bool, String)>,
}

impl Look {
    fn agent_running(&self) -> bool {
        self.agent == AgentView::State(VmState::Running)
    }

    fn qemu_running(&self) -> bool {
        self.qemu.is_some()
            && match &self.qmp {
                Some((running, _)) => *running,
                None => self.agent_running(),
            }
    }

    /// Blind: the agent did not answer and QEMU's state is unknown.
    fn blind(&self) -> bool {
        self.agent == AgentView::Unreachable && self.qemu.is_some() && self.qmp.is_none()
    }

    fn describe(&self) -> String {
        let agent = match self.agent {
            AgentView::State(s) => format!("agent: {s}"),
            AgentView::Absent => "agent: no VM".into(),
            AgentView::Unreachable => "agent: no answer".into(),
        };
        let qemu = match (self.qemu, &self.qmp) {
            (None, _) => "no QEMU".to_string(),
            (Some(pid), Some((_, status))) => format!("QEMU {pid} {status} (QMP)"),
            (Some(pid), None) => format!("QEMU {pid}"),
        };
        format!("{agent}, {qemu}")
    }
}

/// One split-brain episode.
#[derive(Debug, Clone, Serialize)]
pub struct SplitEpisode {
    /// When it was first seen, seconds from the soak's start.
    pub at_s: f64,
    /// How long it was seen (0 for one look).
    pub duration_ms: u64,
    /// The migration running or last run then (1-based; 0 before the first).
    pub migration: u32,
    /// Which way saw it: `agents`, `qemu` or both.
    pub seen_by: Vec<&'static str>,
    /// What each site looked like at its first look.
    pub sites: Vec<String>,
}

/// The watch's findings (field names are a contract).
#[derive(Debug, Clone, Default, Serialize)]
pub struct SplitBrainReport {
    /// How the VM's running state was read (in words).
    pub method: String,
    /// Looks at both sites.
    pub samples: u64,
    /// Longest time between two looks, ms (how well the pace held).
    pub max_sample_gap_ms: u64,
    /// Looks in which both agents said `running`.
    pub agent_samples: u64,
    /// Looks in which both sites had a live QEMU of the VM running.
    pub qemu_samples: u64,
    /// QEMU `query-status` answers (sites whose agent was down).
    pub qmp_answers: u64,
    /// Site looks where the agent did not answer and QEMU's state could
    /// not be asked either.
    pub blind: u64,
    /// Split-brain episodes.
    pub episodes: u32,
    /// The first episodes, described.
    pub details: Vec<SplitEpisode>,
}

/// The running watch; stopped on drop.
pub struct Watch {
    stop: Arc<AtomicBool>,
    task: Option<JoinHandle<SplitBrainReport>>,
}

impl Watch {
    /// Starts looking at `sites` for `vm`; `migration` says which
    /// migration runs (for the episodes), `t0` is the soak's start.
    pub fn start(sites: [SiteWatch; 2], vm: &str, migration: Arc<AtomicU32>, t0: Instant) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(run(sites, vm.to_string(), migration, t0, stop.clone()));
        Self {
            stop,
            task: Some(task),
        }
    }

    /// Stops the watch and returns what it found.
    pub async fn finish(mut self) -> SplitBrainReport {
        self.stop.store(true, Ordering::Relaxed);
        match self.task.take() {
            Some(task) => task.await.unwrap_or_default(),
            None => SplitBrainReport::default(),
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn run(
    sites: [SiteWatch; 2],
    vm: String,
    migration: Arc<AtomicU32>,
    t0: Instant,
    stop: Arc<AtomicBool>,
) -> SplitBrainReport {
    let apis = sites
        .clone()
        .map(|s| ApiClient::new(&s.api_socket).with_timeout(AGENT_TIMEOUT));
    let mut report = SplitBrainReport {
        method: "every 100 ms both sites together: the agents' `vm show` state, and the \
                 QEMU processes (pid file vms/VM/qemu.pid alive; running as QEMU's own \
                 query-status over vms/VM/qmp.sock says while the site's agent is down, \
                 else as the agent says)"
            .into(),
        ..SplitBrainReport::default()
    };
    let mut open: Option<(Instant, usize)> = None;
    let mut last = Instant::now();
    let mut ticker = tokio::time::interval(INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.load(Ordering::Relaxed) {
        ticker.tick().await;
        let now = Instant::now();
        if report.samples > 0 {
            let gap = u64::try_from(now.duration_since(last).as_millis()).unwrap_or(u64::MAX);
            report.max_sample_gap_ms = report.max_sample_gap_ms.max(gap);
        }
        last = now;
        let (a, b) = tokio::join!(
            look(&apis[0], &sites[0].state_dir, &vm),
            look(&apis[1], &sites[1].state_dir, &vm)
        );
        report.samples += 1;
        for l in [&a, &b] {
            report.qmp_answers += u64::from(l.qmp.is_some());
            report.blind += u64::from(l.blind());
        }
        let by_agents = a.agent_running() && b.agent_running();
        let by_qemu = a.qemu_running() && b.qemu_running();
        report.agent_samples += u64::from(by_agents);
        report.qemu_samples += u64::from(by_qemu);
        if !(by_agents || by_qemu) {
            open = None;
            continue;
        }
        let mut seen_by = Vec::new();
        if by_agents {
            seen_by.push("agents");
        }
        if by_qemu {
            seen_by.push("qemu");
        }
        match open {
            Some((start, index)) => {
                if let Some(ep) = report.details.get_mut(index) {
                    ep.duration_ms =
                        u64::try_from(now.duration_since(start).as_millis()).unwrap_or(u64::MAX);
                    for s in seen_by {
                        if !ep.seen_by.contains(&s) {
                            ep.seen_by.push(s);
                        }
                    }
                }
            }
            None => {
                report.episodes += 1;
                let index = report.details.len();
                if index < KEEP_EPISODES {
                    report.details.push(SplitEpisode {
                        at_s: now.duration_since(t0).as_secs_f64(),
                        duration_ms: 0,
                        migration: migration.load(Ordering::Relaxed),
                        seen_by,
                        sites: vec![
                            format!("{}: {}", sites[0].name, a.describe()),
                            format!("{}: {}", sites[1].name, b.describe()),
                        ],
                    });
                }
                tracing::error!(
                    vm,
                    a = %a.describe(),
                    b = %b.describe(),
                    "soak: the VM runs at two sites"
                );
                open = Some((now, index));
            }
        }
    }
    report
}

async fn look(api: &ApiClient, state_dir: &Path, vm: &str) -> Look {
    let agent = match api.vm(vm).await {
        Ok(info) => AgentView::State(info.state),
        Err(e) if e.code() == Some(ErrorCode::NotFound) => AgentView::Absent,
        Err(_) => AgentView::Unreachable,
    };
    let dir = state_dir.join("vms").join(vm);
    let qemu = qemu_pid(&dir, vm);
    let qmp = match (agent, qemu) {
        (AgentView::Unreachable, Some(_)) => qmp_status(&dir.join("qmp.sock")).await,
        _ => None,
    };
    Look { agent, qemu, qmp }
}

/// The live QEMU of `vm` that the pid file in `dir` names.
pub fn qemu_pid(dir: &Path, vm: &str) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(dir.join("qemu.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let marker = format!("process=edgemig-{vm}");
    edgemig_testbed::process::is_ours(pid, &marker).then_some(pid)
}

/// QEMU's `query-status` over its QMP socket: (`running`, status); `None`
/// when QEMU does not answer in time (another client holds the socket).
async fn qmp_status(socket: &Path) -> Option<(bool, String)> {
    tokio::time::timeout(QMP_TIMEOUT, async {
        let stream = UnixStream::connect(socket).await.ok()?;
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        let greeting = lines.next_line().await.ok()??;
        if !greeting.contains("\"QMP\"") {
            return None;
        }
        write
            .write_all(b"{\"execute\":\"qmp_capabilities\"}\n")
            .await
            .ok()?;
        reply(&mut lines).await?;
        write
            .write_all(b"{\"execute\":\"query-status\"}\n")
            .await
            .ok()?;
        let status = reply(&mut lines).await?;
        Some((
            status["running"].as_bool()?,
            status["status"].as_str().unwrap_or_default().to_string(),
        ))
    })
    .await
    .ok()?
}

/// The next command reply (events skipped); `None` on an error reply.
async fn reply(
    lines: &mut tokio::io::Lines<BufReader<tokio::net::unix::OwnedReadHalf>>,
) -> Option<serde_json::Value> {
    loop {
        let line = lines.next_line().await.ok()??;
        let v: serde_json::Value = serde_json::from_str(&line).ok()?;
        if let Some(r) = v.get("return") {
            return Some(r.clone());
        }
        if v.get("error").is_some() {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn look(agent: AgentView, qemu: bool, qmp: Option<bool>) -> Look {
        Look {
            agent,
            qemu: qemu.then_some(42),
            qmp: qmp.map(|r| (r, if r { "running" } else { "paused" }.to_string())),
        }
    }

    #[test]
    fn qemu_state_comes_from_qmp_when_the_agent_is_down() {
        let running = AgentView::State(VmState::Running);
        assert!(look(running, true, None).qemu_running());
        assert!(!look(running, false, None).qemu_running(), "no live QEMU");
        assert!(look(AgentView::Unreachable, true, Some(true)).qemu_running());
        assert!(!look(AgentView::Unreachable, true, Some(false)).qemu_running());
        assert!(!look(AgentView::Unreachable, true, None).qemu_running());
        assert!(look(AgentView::Unreachable, true, None).blind());
        assert!(!look(AgentView::Absent, true, None).blind());
        assert!(
            look(AgentView::Unreachable, true, Some(false))
                .describe()
                .contains("paused (QMP)")
        );
    }

    #[tokio::test]
    async fn qmp_status_reads_a_qmp_server() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            let (r, mut w) = s.into_split();
            let mut lines = BufReader::new(r).lines();
            w.write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\n")
                .await
                .unwrap();
            while let Ok(Some(l)) = lines.next_line().await {
                if l.contains("qmp_capabilities") {
                    w.write_all(b"{\"return\": {}}\n").await.unwrap();
                } else if l.contains("query-status") {
                    w.write_all(b"{\"event\": \"RESUME\"}\n").await.unwrap();
                    w.write_all(b"{\"return\": {\"status\": \"paused\", \"running\": false}}\n")
                        .await
                        .unwrap();
                }
            }
        });
        assert_eq!(qmp_status(&path).await, Some((false, "paused".into())));
        // Nobody answers on a socket whose only client slot is taken.
        let busy = dir.path().join("busy.sock");
        let _held = tokio::net::UnixListener::bind(&busy).unwrap();
        assert_eq!(qmp_status(&busy).await, None);
    }
}
