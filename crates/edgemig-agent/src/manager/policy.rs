//! VM placement policies at this site: setting one (`PUT
//! /v1/vms/{name}/policy`) and showing it with the controller's last
//! decision (`vm show`). The controller itself is [`crate::follow`].

use edgemig_api::policy::{
    FollowState, MAX_PROBE_TARGETS, PolicySpec, PolicyView, ProbeReply, ProbeRequest,
};
use edgemig_api::{VmInfo, VmState};
use edgemig_policy::Follower;

use super::{Manager, ManagerError};

/// Now as unix ms.
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Manager {
    /// Sets (replaces) the placement policy of VM `name`; the last one set
    /// stands. `follow` needs the site directory and the VM's guest agent
    /// (its client connections are the policy's input).
    pub async fn set_policy(&self, name: &str, spec: PolicySpec) -> Result<VmInfo, ManagerError> {
        let _op = self.ops.lock().await;
        let mut record = self.record(name)?;
        match spec {
            PolicySpec::None => {
                record.follow = None;
                self.set_follow_status(name, None);
            }
            PolicySpec::Follow(policy) => {
                policy
                    .validate()
                    .map_err(|e| ManagerError::Invalid(format!("Invalid follow policy: {e}")))?;
                if self.directory.is_none() {
                    return Err(ManagerError::Unavailable(format!(
                        "Site {} has no [directory] in its config: the follow policy needs the site directory",
                        self.config.site
                    )));
                }
                let live = self.live.lock().await.get(name).cloned();
                let has_agent = live.as_ref().is_some_and(|l| l.guest.agent().is_some());
                if record.state != VmState::Running || !has_agent {
                    return Err(ManagerError::Conflict(format!(
                        "VM {name:?} has no running guest agent (state {}): the follow policy needs the guest's client connections",
                        record.state
                    )));
                }
                let follower = record
                    .follow
                    .take()
                    .map(|f| f.follower)
                    .unwrap_or_else(Follower::new);
                record.follow = Some(FollowState {
                    policy,
                    set_at_ms: unix_ms(),
                    follower,
                });
                self.set_follow_status(name, Some("waiting for the first decision".into()));
            }
        }
        self.store.put(&record).map_err(ManagerError::Store)?;
        tracing::info!(
            vm = name,
            follow = record.follow.is_some(),
            "placement policy set"
        );
        Ok(self.info(&record).await)
    }

    /// Probes for a peer site's controller: this site's RTT to each
    /// target. One probe batch at a time (the others wait), at most
    /// [`MAX_PROBE_TARGETS`] targets.
    pub async fn probe(&self, req: ProbeRequest) -> Result<ProbeReply, ManagerError> {
        if req.targets.len() > MAX_PROBE_TARGETS {
            return Err(ManagerError::Invalid(format!(
                "At most {MAX_PROBE_TARGETS} probe targets per request, not {}",
                req.targets.len()
            )));
        }
        let _one_at_a_time = self.probe_gate.lock().await;
        Ok(ProbeReply {
            rtt_ms: crate::follow::probe::probe_all(&req.targets).await,
        })
    }

    /// What the controller is doing about VM `name`, in words.
    pub(crate) fn set_follow_status(&self, name: &str, status: Option<String>) {
        let mut map = self
            .follow_status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match status {
            Some(s) => {
                map.insert(name.to_string(), s);
            }
            None => {
                map.remove(name);
            }
        }
    }

    /// The policy part of `vm show`.
    pub(crate) fn policy_view(&self, record: &crate::vm::VmRecord) -> Option<PolicyView> {
        let follow = record.follow.as_ref()?;
        let status = self
            .follow_status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&record.name)
            .cloned()
            .unwrap_or_else(|| "waiting for the controller".into());
        let decision = follow.follower.last_decision().cloned();
        Some(PolicyView {
            spec: PolicySpec::Follow(follow.policy.clone()),
            set_at_ms: follow.set_at_ms,
            status,
            explanation: decision.as_ref().map(ToString::to_string),
            decision,
        })
    }
}
