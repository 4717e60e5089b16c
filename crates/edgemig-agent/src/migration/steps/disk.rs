//! Step 2, disks. Source: mirror every disk (`blockdev-mirror` to the
//! destination's NBD export of the same node, over MPTCP and TLS; `sync:
//! top` when the destination holds the disk's base image) and wait until
//! each mirror is `ready`. The hand-over itself happens in the switchover,
//! with the VM paused ([`hand_over`]): each mirror completes cleanly or the
//! migration fails with the source intact. Rollback: cancel the mirrors.
//! The destination's side (exports) is part of the prepare step.

use std::time::Duration;

use edgemig_api::peer::IncomingReady;
use edgemig_migration::{DiskTransfer, Phase};
use edgemig_qmp::MirrorSyncMode;

use crate::migration::context::{SourceCtx, SourceError, qmp_err};
use crate::migration::qmp_steps::{self, MirrorEnd};

/// How often the mirrors' progress is read.
const POLL: Duration = Duration::from_millis(500);

/// The block nodes being mirrored (root first).
pub fn nodes(ctx: &SourceCtx) -> Vec<&'static str> {
    ctx.record.disks().iter().map(|d| d.role.node()).collect()
}

/// Starts a mirror per disk; returns the nodes whose mirror started and
/// each disk's transfer (its bytes are filled in by [`hand_over`]).
pub async fn start(
    ctx: &SourceCtx,
    ready: &IncomingReady,
) -> Result<(Vec<&'static str>, Vec<DiskTransfer>), SourceError> {
    let mut started = Vec::new();
    let mut transfers = Vec::new();
    let Some(port) = ready.nbd_port else {
        return Ok((started, transfers));
    };
    let qmp = &ctx.live.qmp;
    let mptcp = ctx.plan.transport == edgemig_migration::Transport::Mptcp;
    let host = destination_host(ctx, ready);
    for disk in ctx.record.disks() {
        let node = disk.role.node();
        let target = ready
            .disks
            .iter()
            .find(|d| d.export == node)
            .ok_or_else(|| {
                SourceError::Disk(format!(
                    "the destination does not export the {} disk",
                    disk.role
                ))
            })?;
        let top = target.base_present && disk.base.is_some();
        let sync = if top {
            MirrorSyncMode::Top
        } else {
            MirrorSyncMode::Full
        };
        tracing::info!(id = %ctx.id, vm = %ctx.vm, disk = %disk.role, ?sync, "mirroring");
        let tls_hostname = (!ctx.options.insecure).then_some(ctx.to.as_str());
        let result =
            qmp_steps::start_mirror(qmp, node, (&host, port), mptcp, tls_hostname, sync).await;
        if let Err(e) = result {
            rollback(ctx, &started).await;
            return Err(qmp_err(Phase::Disk)(e));
        }
        started.push(node);
        transfers.push(DiskTransfer {
            role: disk.role.as_str().to_string(),
            sync: if top { "top" } else { "full" }.into(),
            bytes: 0,
        });
    }
    Ok((started, transfers))
}

/// Waits until every mirror is ready; returns the bytes they processed.
pub async fn wait_ready(ctx: &SourceCtx, nodes: &[&str]) -> Result<u64, SourceError> {
    let qmp = &ctx.live.qmp;
    loop {
        ctx.check_cancel()?;
        let (mut done, mut len, mut all_ready) = (0u64, 0u64, true);
        for node in nodes {
            let job = qmp_steps::mirror_job(qmp, node)
                .await
                .map_err(qmp_err(Phase::Disk))?
                .ok_or_else(|| {
                    SourceError::Disk(format!("the mirror of {node} ended before it was ready"))
                })?;
            if let Some(err) = job.io_status.as_deref().filter(|s| *s != "ok") {
                return Err(SourceError::Disk(format!(
                    "the mirror of {node}: I/O {err}"
                )));
            }
            if let Some(err) = &job.error {
                return Err(SourceError::Disk(format!("the mirror of {node}: {err}")));
            }
            done += job.offset;
            len += job.len;
            all_ready &= job.ready;
        }
        ctx.progress(Phase::Disk, done, len.saturating_sub(done), 0, 0);
        if all_ready {
            return Ok(done);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// With the VM paused: ends every mirror so its target is a consistent,
/// complete copy; any mirror that did not complete cleanly fails the
/// migration (and the rest are cancelled). Fills in each disk's bytes.
pub async fn hand_over(
    ctx: &SourceCtx,
    nodes: &[&str],
    transfers: &mut [DiskTransfer],
) -> Result<u64, SourceError> {
    let qmp = &ctx.live.qmp;
    let mut bytes = 0;
    for (i, node) in nodes.iter().enumerate() {
        match qmp_steps::complete_mirror(qmp, node)
            .await
            .map_err(qmp_err(Phase::Switchover))?
        {
            MirrorEnd::Complete { len } => {
                bytes += len;
                if let Some(t) = transfers.get_mut(i) {
                    t.bytes = len;
                }
            }
            MirrorEnd::Failed(why) => {
                rollback(ctx, &nodes[i + 1..]).await;
                return Err(SourceError::Disk(why));
            }
        }
    }
    Ok(bytes)
}

/// Rollback: stops the mirrors of `nodes` at once.
pub async fn rollback(ctx: &SourceCtx, nodes: &[&str]) {
    for node in nodes {
        if let Err(error) = qmp_steps::cancel_mirror(&ctx.live.qmp, node).await {
            tracing::warn!(id = %ctx.id, node, %error, "cannot cancel a mirror");
        }
    }
}

/// Where the destination's QEMU listens: its answer, or the peer address
/// when it listens on every address.
pub fn destination_host(ctx: &SourceCtx, ready: &IncomingReady) -> String {
    if ready.host.is_empty() || ready.host == "0.0.0.0" {
        ctx.peer_addr.ip().to_string()
    } else {
        ready.host.clone()
    }
}
