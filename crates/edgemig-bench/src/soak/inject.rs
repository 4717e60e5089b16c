//! Carrying out the planned faults on the running testbed: agents killed
//! with SIGKILL and started again (as `edgemig testbed agent kill|start`
//! does), paths taken down and up again through their emulators (as
//! `edgemig testbed link pathN set down|up`), and `migrate cancel`.

use std::time::{Duration, Instant};

use edgemig_api::ErrorCode;
use serde::Serialize;
use serde_json::json;

use super::bed::Bed;
use super::plan::{Fault, FaultKind, Moment, phase_rank};

/// How often the source's phase is read while a fault waits for it.
const PHASE_POLL: Duration = Duration::from_millis(50);
/// Attempts to start a killed agent again.
const START_ATTEMPTS: u32 = 3;

/// What became of one planned fault (field names are a contract).
#[derive(Debug, Clone, Serialize)]
pub struct FaultRecord {
    /// The plan.
    #[serde(flatten)]
    pub fault: Fault,
    /// Whether it was carried out (a fault waiting for a phase the
    /// migration never reached was not).
    pub injected: bool,
    /// The site whose agent was killed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// The source's phase when it struck.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at_phase: Option<String>,
    /// For a cancel: whether the agent refused it (after the switchover).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<bool>,
    /// What happened, in words (why it was not injected, the agent's
    /// refusal, a failure to undo it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl FaultRecord {
    fn new(fault: Fault) -> Self {
        Self {
            fault,
            injected: false,
            site: None,
            at_phase: None,
            refused: None,
            note: None,
        }
    }

    /// One line for humans.
    pub fn describe(&self) -> String {
        let mut s = self.fault.describe();
        if let Some(site) = &self.site {
            s.push_str(&format!(" [{site}]"));
        }
        if let Some(p) = &self.at_phase
            && matches!(self.fault.moment, Moment::During { phase } if phase.name() != p)
        {
            s.push_str(&format!(" struck in {p}"));
        }
        if !self.injected {
            s.push_str(" NOT INJECTED");
        }
        if self.refused == Some(true) {
            s.push_str(" refused");
        }
        if let Some(n) = &self.note {
            s.push_str(&format!(": {n}"));
        }
        s
    }
}

/// Carries out `fault` for the migration `id` (`None` between migrations)
/// from site `from` to `to` (between migrations: `from` runs the VM).
/// Returns once the fault was undone: the agent runs again, the paths are
/// up.
pub async fn inject(
    bed: &Bed,
    vm: &str,
    fault: Fault,
    from: usize,
    to: usize,
    id: Option<&str>,
) -> FaultRecord {
    let mut rec = FaultRecord::new(fault);
    if let (Moment::During { phase }, Some(id)) = (fault.moment, id) {
        match wait_phase(bed, from, vm, id, phase.rank()).await {
            Ok(seen) => rec.at_phase = Some(seen),
            Err(why) => {
                rec.note = Some(why);
                return rec;
            }
        }
    }
    match fault.kind {
        FaultKind::KillSource | FaultKind::KillDestination => {
            let site = if fault.kind == FaultKind::KillSource {
                from
            } else {
                to
            };
            kill_and_restart(bed, site, fault.hold(), &mut rec).await;
        }
        FaultKind::CutPath => {
            let p = fault
                .path
                .unwrap_or(0)
                .min(bed.paths.len().saturating_sub(1));
            cut(bed, &[p], fault.hold(), &mut rec).await;
        }
        FaultKind::CutBothPaths => {
            let all: Vec<usize> = (0..bed.paths.len()).collect();
            cut(bed, &all, fault.hold(), &mut rec).await;
        }
        FaultKind::Cancel => {
            rec.injected = true;
            match bed.sites[from].api.cancel_migration(vm).await {
                Ok(_) => rec.refused = Some(false),
                Err(e) => {
                    rec.refused = Some(true);
                    rec.note = Some(if e.code() == Some(ErrorCode::Conflict) {
                        e.to_string()
                    } else {
                        format!("cancel failed: {e}")
                    });
                }
            }
        }
    }
    rec
}

/// Waits until migration `id` at `site` reached a phase of rank `rank` or
/// later; that phase, or why it never came.
async fn wait_phase(
    bed: &Bed,
    site: usize,
    vm: &str,
    id: &str,
    rank: u8,
) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(3600);
    let mut last = String::from("unknown");
    while Instant::now() < deadline {
        if let Ok(view) = bed.sites[site].api.migration(vm).await {
            if view.id != id {
                return Err(format!("migration {id} is not the latest any more"));
            }
            if !view.running {
                return Err(format!("the migration ended (last phase seen: {last})"));
            }
            if let Some(p) = view.phase {
                if phase_rank(&p).is_some_and(|r| r >= rank) {
                    return Ok(p);
                }
                last = p;
            }
        }
        tokio::time::sleep(PHASE_POLL).await;
    }
    Err("the phase never came".into())
}

async fn kill_and_restart(bed: &Bed, site: usize, hold: Duration, rec: &mut FaultRecord) {
    let name = bed.sites[site].name.clone();
    rec.site = Some(name.clone());
    let testbed = bed.testbed.clone();
    let (t, n) = (testbed.clone(), name.clone());
    match tokio::task::spawn_blocking(move || edgemig_testbed::agents::kill_agent(&t, &n)).await {
        Ok(Ok(pid)) => {
            rec.injected = true;
            tracing::info!(site = %name, pid, "soak: agent killed");
        }
        Ok(Err(e)) => {
            rec.note = Some(format!("kill failed: {e}"));
            return;
        }
        Err(e) => {
            rec.note = Some(format!("kill failed: {e}"));
            return;
        }
    }
    tokio::time::sleep(hold).await;
    let mut errors = Vec::new();
    for _ in 0..START_ATTEMPTS {
        let (t, n, agent) = (testbed.clone(), name.clone(), bed.agent.clone());
        let started = tokio::task::spawn_blocking(move || {
            edgemig_testbed::agents::start_agent(&t, &n, &agent)
        })
        .await;
        match started {
            Ok(Ok(pid)) => {
                tracing::info!(site = %name, pid, "soak: agent started again");
                if !errors.is_empty() {
                    rec.note = Some(format!("restart needed retries: {}", errors.join("; ")));
                }
                return;
            }
            Ok(Err(e)) => errors.push(error_chain(&e)),
            Err(e) => errors.push(e.to_string()),
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    rec.note = Some(format!(
        "the agent did not start again: {}",
        errors.join("; ")
    ));
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

fn set_paths(bed: &Bed, paths: &[usize], up: bool) -> Result<(), String> {
    for &p in paths {
        let (name, control) = &bed.paths[p];
        edgemig_testbed::control::request(control, &json!({ "up": up }))
            .map_err(|e| format!("{name} {}: {e}", if up { "up" } else { "down" }))?;
    }
    Ok(())
}

async fn cut(bed: &Bed, paths: &[usize], hold: Duration, rec: &mut FaultRecord) {
    match set_paths(bed, paths, false) {
        Ok(()) => rec.injected = true,
        Err(e) => rec.note = Some(e),
    }
    tokio::time::sleep(hold).await;
    // Undo whatever happened: every path of the cut up again.
    let mut last = Err(String::new());
    for _ in 0..5 {
        last = set_paths(bed, paths, true);
        if last.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if let Err(e) = last {
        rec.note = Some(format!("cannot bring the path up again: {e}"));
    }
}
