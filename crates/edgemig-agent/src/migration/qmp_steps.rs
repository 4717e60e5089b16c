//! The QMP commands of a migration, on the source and on the destination
//! QEMU, one small function each so the steps read as lists.

use std::time::Duration;

use edgemig_qmp::{
    BlockJobInfo, KnownEvent, MigrationCapability, MigrationChannel, MirrorArgs, MirrorSyncMode,
    NbdExportArgs, NbdServerArgs, Qmp, QmpError,
};
use serde_json::{Value, json};

/// Id of the TLS credentials object.
pub const TLS_OBJECT: &str = "edgemig-tls";
/// Id of the authorization object admitting only the peer site's
/// certificate on the destination's listeners.
pub const AUTHZ_OBJECT: &str = "edgemig-authz";
/// Longest a ready mirror may take to hand its disk over (flush what is
/// left and end) once the source VM is paused.
const MIRROR_END_LIMIT: Duration = Duration::from_secs(120);

/// Job id of the mirror of block node `node` at the source.
pub fn mirror_job_id(node: &str) -> String {
    format!("edgemig-mirror-{node}")
}

/// Node name of the NBD client node for block node `node` at the source.
fn target_node(node: &str) -> String {
    format!("edgemig-target-{node}")
}

/// Export id of block node `node` at the destination.
fn export_id(node: &str) -> String {
    format!("edgemig-export-{node}")
}

/// Adds `tls-creds-x509` credentials from `dir` (QEMU's file layout);
/// `endpoint` is `server` or `client`.
pub async fn add_tls_creds(qmp: &Qmp, dir: &str, endpoint: &str) -> Result<(), QmpError> {
    qmp.object_add(json!({
        "qom-type": "tls-creds-x509",
        "id": TLS_OBJECT,
        "dir": dir,
        "endpoint": endpoint,
        "verify-peer": true,
    }))
    .await
}

/// Destination: admits only the certificate of `site` (its distinguished
/// name is `CN=<site>`, see `edgemig-pki`).
pub async fn add_authz(qmp: &Qmp, site: &str) -> Result<(), QmpError> {
    qmp.object_add(json!({
        "qom-type": "authz-simple",
        "id": AUTHZ_OBJECT,
        "identity": format!("CN={site}"),
    }))
    .await
}

/// Sets migration capabilities by QEMU name.
pub async fn set_capabilities(qmp: &Qmp, caps: &[(String, bool)]) -> Result<(), QmpError> {
    let caps: Vec<(MigrationCapability, bool)> = caps
        .iter()
        .map(|(name, on)| {
            (
                name.parse()
                    .unwrap_or(MigrationCapability::Other(name.clone())),
                *on,
            )
        })
        .collect();
    qmp.migrate_set_capabilities(&caps).await
}

/// Applies migration parameters (QEMU names) when there are any.
pub async fn set_parameters(qmp: &Qmp, params: &Value) -> Result<(), QmpError> {
    if params.as_object().is_some_and(|o| !o.is_empty()) {
        qmp.migrate_set_parameters(params.clone()).await?;
    }
    Ok(())
}

/// Destination: serves block nodes `nodes` writable over NBD on
/// `host:port` (each under its node name), with TLS and the peer's
/// authorization when `tls`.
pub async fn export_disks(
    qmp: &Qmp,
    host: &str,
    port: u16,
    mptcp: bool,
    tls: bool,
    nodes: &[&str],
) -> Result<(), QmpError> {
    let mut server = NbdServerArgs::inet(host, port, mptcp);
    if tls {
        server.tls_creds = Some(TLS_OBJECT.into());
        server.tls_authz = Some(AUTHZ_OBJECT.into());
    }
    qmp.nbd_server_start(&server).await?;
    for node in nodes {
        qmp.block_export_add(&NbdExportArgs::new(export_id(node), *node, *node, true))
            .await?;
    }
    Ok(())
}

/// Destination: stops serving the disks (the source's NBD clients are gone
/// by then: their mirrors ended).
pub async fn unexport_disks(qmp: &Qmp, nodes: &[&str]) -> Result<(), QmpError> {
    for node in nodes {
        qmp.block_export_del(&export_id(node), false).await?;
    }
    qmp.nbd_server_stop().await
}

/// Destination: listens for the memory stream on `host:port`.
pub async fn listen_memory(qmp: &Qmp, host: &str, port: u16, mptcp: bool) -> Result<(), QmpError> {
    qmp.migrate_incoming(&[MigrationChannel::main_inet(host, port, mptcp)], false)
        .await
}

/// Source: mirrors block node `node` to the destination's export of the
/// same name; with TLS (`tls_hostname`: the name the destination's
/// certificate must carry).
pub async fn start_mirror(
    qmp: &Qmp,
    node: &str,
    (host, port): (&str, u16),
    mptcp: bool,
    tls_hostname: Option<&str>,
    sync: MirrorSyncMode,
) -> Result<(), QmpError> {
    let mut server = json!({"type": "inet", "host": host, "port": port.to_string()});
    if mptcp {
        server["mptcp"] = json!(true);
    }
    let target = target_node(node);
    let mut nbd = json!({
        "driver": "nbd",
        "node-name": target,
        "server": server,
        "export": node,
    });
    if let Some(name) = tls_hostname {
        nbd["tls-creds"] = json!(TLS_OBJECT);
        nbd["tls-hostname"] = json!(name);
    }
    qmp.blockdev_add(nbd).await?;
    let mut args = MirrorArgs::new(node, &target, sync);
    args.job_id = Some(mirror_job_id(node));
    // The job waits for us to end it (it must not vanish on an error
    // before it was seen); errors stop it rather than corrupt the copy.
    args.auto_dismiss = Some(false);
    args.on_target_error = Some("report".into());
    args.on_source_error = Some("report".into());
    if let Err(e) = qmp.blockdev_mirror(&args).await {
        let _ = qmp.blockdev_del(&target).await;
        return Err(e);
    }
    Ok(())
}

/// Source: the mirror job of `node`, if it exists.
pub async fn mirror_job(qmp: &Qmp, node: &str) -> Result<Option<BlockJobInfo>, QmpError> {
    let id = mirror_job_id(node);
    Ok(qmp
        .query_block_jobs()
        .await?
        .into_iter()
        .find(|j| j.device == id))
}

/// How a mirror's hand-over went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MirrorEnd {
    /// The target holds a consistent copy of all `len` bytes.
    Complete {
        /// Bytes of the disk.
        len: u64,
    },
    /// It failed: the target is not to be trusted.
    Failed(String),
}

/// Source, with the VM paused: ends the ready mirror of `node` so that its
/// target is a consistent copy (`block-job-cancel` of a ready job flushes
/// what is left and completes without pivoting), and checks that it
/// really completed: a `BLOCK_JOB_COMPLETED` without error, with every
/// byte copied. Then the NBD client node goes away.
pub async fn complete_mirror(qmp: &Qmp, node: &str) -> Result<MirrorEnd, QmpError> {
    let id = mirror_job_id(node);
    let mut events = qmp.subscribe();
    let Some(job) = mirror_job(qmp, node).await? else {
        return Ok(MirrorEnd::Failed(format!("the mirror of {node} is gone")));
    };
    if !job.ready {
        return Ok(MirrorEnd::Failed(format!(
            "the mirror of {node} is not ready ({:?})",
            job.status
        )));
    }
    if let Some(err) = job.io_status.as_deref().filter(|s| *s != "ok") {
        return Ok(MirrorEnd::Failed(format!(
            "the mirror of {node}: I/O {err}"
        )));
    }
    qmp.block_job_cancel(&id, false).await?;
    let ended = events
        .wait_for(
            |e| match e.known() {
                KnownEvent::BlockJobCompleted(d) | KnownEvent::BlockJobCancelled(d) => {
                    d.device == id
                }
                KnownEvent::BlockJobError { device, .. } => device == id,
                _ => false,
            },
            MIRROR_END_LIMIT,
        )
        .await;
    let outcome = match ended.as_ref().map(|e| e.known()) {
        Ok(KnownEvent::BlockJobCompleted(d)) => match &d.error {
            Some(error) => MirrorEnd::Failed(format!("the mirror of {node} failed: {error}")),
            None if d.offset != d.len => MirrorEnd::Failed(format!(
                "the mirror of {node} ended at {} of {} bytes",
                d.offset, d.len
            )),
            None => MirrorEnd::Complete { len: d.len },
        },
        Ok(KnownEvent::BlockJobCancelled(d)) => MirrorEnd::Failed(format!(
            "the mirror of {node} was cancelled at {} of {} bytes",
            d.offset, d.len
        )),
        Ok(KnownEvent::BlockJobError { operation, .. }) => {
            MirrorEnd::Failed(format!("the mirror of {node} failed to {operation}"))
        }
        Ok(_) => MirrorEnd::Failed(format!("the mirror of {node} ended unexpectedly")),
        Err(_) => MirrorEnd::Failed(format!(
            "the mirror of {node} did not end within {MIRROR_END_LIMIT:?}"
        )),
    };
    let _ = qmp.job_dismiss(&id).await;
    drop_target(qmp, node).await?;
    Ok(outcome)
}

/// Source: stops the mirror of `node` at once (the target is abandoned) and
/// removes its NBD client node; nothing left is an error.
pub async fn cancel_mirror(qmp: &Qmp, node: &str) -> Result<(), QmpError> {
    let id = mirror_job_id(node);
    if mirror_job(qmp, node).await?.is_some() {
        let _ = qmp.block_job_cancel(&id, true).await;
        for _ in 0..600 {
            match mirror_job(qmp, node).await? {
                None => break,
                Some(j) if j.status.as_str() == "concluded" => {
                    let _ = qmp.job_dismiss(&id).await;
                }
                Some(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
    drop_target(qmp, node).await
}

async fn drop_target(qmp: &Qmp, node: &str) -> Result<(), QmpError> {
    match qmp.blockdev_del(&target_node(node)).await {
        Ok(()) => Ok(()),
        // Already gone.
        Err(e) if e.qemu_class().is_some() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Source: starts the memory stream to `host:port`.
pub async fn start_memory(qmp: &Qmp, host: &str, port: u16, mptcp: bool) -> Result<(), QmpError> {
    qmp.migrate(&[MigrationChannel::main_inet(host, port, mptcp)])
        .await
}
