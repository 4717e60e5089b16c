//! The migrations this agent drives as a source: the running ones (with
//! their latest progress, phase, a cancel switch and the operator's
//! resolution of an unknown outcome) and the finished ones (kept in memory
//! and appended to `STATE_DIR/migrations.jsonl`).

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use edgemig_api::MigrationView;
use edgemig_migration::{MigrationReport, Outcome, ProgressEvent};
use tokio::sync::watch;

use crate::metrics::MigrationTotals;

/// Most finished migrations kept in memory.
const HISTORY: usize = 200;

#[derive(Debug)]
struct Running {
    id: String,
    to: String,
    progress: Option<ProgressEvent>,
    phase: Option<String>,
    note: Option<String>,
    cancel: watch::Sender<bool>,
    resolve: watch::Sender<Option<Outcome>>,
}

/// The switches of one running migration.
#[derive(Debug)]
pub struct Switches {
    /// Set when the operator cancels.
    pub cancel: watch::Receiver<bool>,
    /// Set when the operator settles an unknown outcome.
    pub resolve: watch::Receiver<Option<Outcome>>,
}

/// Running and finished migrations.
#[derive(Debug)]
pub struct Registry {
    running: Mutex<HashMap<String, Running>>,
    finished: Mutex<Vec<MigrationReport>>,
    totals: Mutex<MigrationTotals>,
    log: PathBuf,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Registry {
    /// A registry persisting finished reports to `log`; earlier ones are
    /// read back.
    pub fn open(log: PathBuf) -> Self {
        let finished = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect::<Vec<MigrationReport>>();
        let skip = finished.len().saturating_sub(HISTORY);
        let mut totals = MigrationTotals::default();
        finished.iter().for_each(|r| totals.add(r));
        Self {
            totals: Mutex::new(totals),
            running: Mutex::new(HashMap::new()),
            finished: Mutex::new(finished.into_iter().skip(skip).collect()),
            log,
        }
    }

    /// Registers migration `id` of `vm` to `to`; None when one is running.
    pub fn begin(&self, id: &str, vm: &str, to: &str) -> Option<Switches> {
        let mut running = lock(&self.running);
        if running.contains_key(vm) {
            return None;
        }
        let (cancel, cancel_rx) = watch::channel(false);
        let (resolve, resolve_rx) = watch::channel(None);
        running.insert(
            vm.to_string(),
            Running {
                id: id.to_string(),
                to: to.to_string(),
                progress: None,
                phase: None,
                note: None,
                cancel,
                resolve,
            },
        );
        Some(Switches {
            cancel: cancel_rx,
            resolve: resolve_rx,
        })
    }

    /// Records `vm`'s migration's phase and why it waits.
    pub fn phase(&self, vm: &str, phase: &str, note: Option<String>) {
        if let Some(r) = lock(&self.running).get_mut(vm) {
            r.phase = Some(phase.to_string());
            r.note = note;
        }
    }

    /// Hands the operator's settlement to `vm`'s running migration; false
    /// when none runs.
    pub fn resolve(&self, vm: &str, outcome: Outcome) -> bool {
        lock(&self.running)
            .get(vm)
            .is_some_and(|r| r.resolve.send(Some(outcome)).is_ok())
    }

    /// Whether a migration of `vm` runs now.
    pub fn is_running(&self, vm: &str) -> bool {
        lock(&self.running).contains_key(vm)
    }

    /// Records progress of `vm`'s migration.
    pub fn progress(&self, vm: &str, event: ProgressEvent) {
        if let Some(r) = lock(&self.running).get_mut(vm) {
            r.progress = Some(event);
        }
    }

    /// Asks `vm`'s migration to stop; false when none runs.
    pub fn cancel(&self, vm: &str) -> bool {
        lock(&self.running)
            .get(vm)
            .is_some_and(|r| r.cancel.send(true).is_ok())
    }

    /// Ends `vm`'s migration with `report`.
    pub fn finish(&self, vm: &str, report: MigrationReport) {
        lock(&self.running).remove(vm);
        if let Ok(line) = serde_json::to_string(&report) {
            let appended = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.log)
                .and_then(|mut f| writeln!(f, "{line}"));
            if let Err(error) = appended {
                tracing::warn!(%error, "cannot append to the migration log");
            }
        }
        lock(&self.totals).add(&report);
        let mut finished = lock(&self.finished);
        finished.push(report);
        let excess = finished.len().saturating_sub(HISTORY);
        finished.drain(..excess);
    }

    /// Counters over every finished migration, and how many run now.
    pub fn totals(&self) -> (MigrationTotals, usize) {
        (lock(&self.totals).clone(), lock(&self.running).len())
    }

    /// Running migrations first, then finished ones, newest first.
    pub fn list(&self) -> Vec<MigrationView> {
        let mut out: Vec<MigrationView> = lock(&self.running)
            .iter()
            .map(|(vm, r)| MigrationView {
                id: r.id.clone(),
                vm: vm.clone(),
                to: r.to.clone(),
                running: true,
                phase: r.phase.clone(),
                note: r.note.clone(),
                progress: r.progress.clone(),
                report: None,
            })
            .collect();
        out.extend(lock(&self.finished).iter().rev().map(|rep| MigrationView {
            id: rep.id.clone(),
            vm: rep.vm.clone(),
            to: rep.to.clone(),
            running: false,
            phase: None,
            note: None,
            progress: None,
            report: Some(rep.clone()),
        }));
        out
    }

    /// The running migration of `vm`, else its latest finished one.
    pub fn latest(&self, vm: &str) -> Option<MigrationView> {
        self.list().into_iter().find(|v| v.vm == vm)
    }
}
