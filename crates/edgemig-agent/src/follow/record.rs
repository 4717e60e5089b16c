//! The follow controller's record: every observation, the policy in force
//! and the decision, one JSON line each, in `<state>/follow/<vm>.jsonl`
//! (the previous file kept as `<vm>.jsonl.1` once it reaches
//! [`MAX_BYTES`]). Replaying a VM's lines from all sites in time order
//! through a fresh `Follower` gives the same decisions: that is how
//! `edgemig-policy` is tested on recorded traces.

use std::io::Write;
use std::path::Path;

use edgemig_policy::{Decision, FollowPolicy, Observation};
use serde::Serialize;

/// Size at which a record file is rotated.
pub const MAX_BYTES: u64 = 4 << 20;

/// One line of the record.
#[derive(Debug, Serialize)]
pub struct RecordLine<'a> {
    /// The inputs.
    pub observation: &'a Observation,
    /// The policy in force.
    pub policy: &'a FollowPolicy,
    /// What was decided.
    pub decision: &'a Decision,
}

/// Appends one line to `dir/<vm>.jsonl`; failures are logged, never fatal.
pub fn append(dir: &Path, vm: &str, line: &RecordLine<'_>) {
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("{vm}.jsonl"));
        if std::fs::metadata(&path).is_ok_and(|m| m.len() >= MAX_BYTES) {
            std::fs::rename(&path, dir.join(format!("{vm}.jsonl.1")))?;
        }
        let mut text = serde_json::to_string(line).map_err(std::io::Error::other)?;
        text.push('\n');
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?
            .write_all(text.as_bytes())
    };
    if let Err(error) = write() {
        tracing::warn!(vm, %error, "cannot record the follow decision");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgemig_policy::Follower;

    #[test]
    fn lines_are_appended_and_rotated() {
        let dir = tempfile::tempdir().unwrap();
        let obs = Observation {
            at_ms: 1,
            current_site: "site-a".into(),
            migration_in_progress: false,
            clients: vec![],
            migration_cost: Default::default(),
        };
        let policy = FollowPolicy::default();
        let decision = Follower::new().observe(&obs, &policy);
        let line = RecordLine {
            observation: &obs,
            policy: &policy,
            decision: &decision,
        };
        append(dir.path(), "vm", &line);
        append(dir.path(), "vm", &line);
        let text = std::fs::read_to_string(dir.path().join("vm.jsonl")).unwrap();
        assert_eq!(text.lines().count(), 2);
        let back: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(back["observation"]["current_site"], "site-a");
        // Past the size limit the file moves aside.
        let big = dir.path().join("vm.jsonl");
        std::fs::OpenOptions::new()
            .append(true)
            .open(&big)
            .unwrap()
            .set_len(MAX_BYTES)
            .unwrap();
        append(dir.path(), "vm", &line);
        assert!(dir.path().join("vm.jsonl.1").exists());
        assert_eq!(std::fs::read_to_string(&big).unwrap().lines().count(), 1);
    }
}
