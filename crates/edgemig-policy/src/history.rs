//! The VM's recent moves, bounded to [`HISTORY_LEN`] records: what the
//! hourly cap counts and what the ping-pong guard looks back on.
//!
//! Policy moves are recorded when decided (a failed attempt still counts
//! against the cap, which bounds retries); moves the follower did not
//! decide (an operator's `edgemig migrate`) are recorded when observed,
//! with `by_policy: false`, and count for the ping-pong guard only.
//! [`crate::FollowPolicy::validate`] keeps `max_per_hour` at or below
//! [`HISTORY_LEN`] and the return cool-down within the cap window, so the
//! bounded history is always enough for both rules.

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// Most records kept.
pub const HISTORY_LEN: usize = 64;

/// One move of the VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationRecord {
    /// When it was decided (policy) or observed (other), ms.
    pub at_ms: u64,
    /// Site left.
    pub from: String,
    /// Site moved to.
    pub to: String,
    /// Whether the follow policy decided it.
    pub by_policy: bool,
}

/// The last [`HISTORY_LEN`] moves, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(from = "Vec<MigrationRecord>", into = "Vec<MigrationRecord>")]
pub struct History {
    records: VecDeque<MigrationRecord>,
}

impl From<Vec<MigrationRecord>> for History {
    /// Keeps the newest [`HISTORY_LEN`] records (persisted state may come
    /// from an older or tampered file).
    fn from(v: Vec<MigrationRecord>) -> Self {
        let skip = v.len().saturating_sub(HISTORY_LEN);
        History {
            records: v.into_iter().skip(skip).collect(),
        }
    }
}

impl From<History> for Vec<MigrationRecord> {
    fn from(h: History) -> Self {
        h.records.into()
    }
}

/// How the cap window looks at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowCount {
    /// Policy moves within the window.
    pub count: usize,
    /// The oldest of them, ms.
    pub oldest_at_ms: Option<u64>,
}

impl History {
    /// Append, dropping the oldest record beyond [`HISTORY_LEN`].
    pub fn push(&mut self, record: MigrationRecord) {
        self.records.push_back(record);
        while self.records.len() > HISTORY_LEN {
            self.records.pop_front();
        }
    }

    /// Records, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &MigrationRecord> {
        self.records.iter()
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether there is no record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The newest record.
    pub fn last(&self) -> Option<&MigrationRecord> {
        self.records.back()
    }

    /// Policy moves in the window `(at_ms - window_ms, at_ms]`.
    pub fn policy_moves_within(&self, at_ms: u64, window_ms: u64) -> WindowCount {
        let mut count = 0;
        let mut oldest_at_ms = None;
        for r in self
            .records
            .iter()
            .filter(|r| r.by_policy && at_ms.saturating_sub(r.at_ms) < window_ms)
        {
            count += 1;
            oldest_at_ms = Some(oldest_at_ms.map_or(r.at_ms, |o: u64| o.min(r.at_ms)));
        }
        WindowCount {
            count,
            oldest_at_ms,
        }
    }

    /// The newest move away from `site` less than `cooldown_ms` before
    /// `at_ms`, if any.
    pub fn left_within(
        &self,
        site: &str,
        at_ms: u64,
        cooldown_ms: u64,
    ) -> Option<&MigrationRecord> {
        self.records
            .iter()
            .rev()
            .find(|r| r.from == site && at_ms.saturating_sub(r.at_ms) < cooldown_ms)
    }
}

#[cfg(test)]
#[path = "history_tests.rs"]
mod tests;
