//! The QMP steps of a migration, on the source and on the destination QEMU.
//! Each step is one small function so the orchestration reads as a list.

use std::time::Duration;

use edgemig_qmp::{
    BlockJobInfo, MigrationCapability, MigrationChannel, MirrorArgs, MirrorSyncMode, NbdExportArgs,
    NbdServerArgs, Qmp, QmpError,
};
use serde_json::{Value, json};

/// Node name of the VM's data disk (see the QEMU command line).
pub const DISK_NODE: &str = "data0";
/// NBD export name of the data disk at the destination.
pub const EXPORT_NAME: &str = "data0";
/// Block export id at the destination.
const EXPORT_ID: &str = "edgemig-export";
/// Node name of the NBD client node at the source.
const TARGET_NODE: &str = "edgemig-target";
/// Job id of the disk mirror at the source.
pub const MIRROR_JOB: &str = "edgemig-mirror";
/// Id of the TLS credentials object.
pub const TLS_OBJECT: &str = "edgemig-tls";

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

/// Destination: serve the data disk writable over NBD on `port`.
pub async fn export_disk(qmp: &Qmp, port: u16, mptcp: bool, tls: bool) -> Result<(), QmpError> {
    let mut server = NbdServerArgs::inet("0.0.0.0", port, mptcp);
    if tls {
        server.tls_creds = Some(TLS_OBJECT.into());
    }
    qmp.nbd_server_start(&server).await?;
    qmp.block_export_add(&NbdExportArgs::new(EXPORT_ID, DISK_NODE, EXPORT_NAME, true))
        .await
}

/// Destination: stop serving the disk.
pub async fn unexport_disk(qmp: &Qmp) -> Result<(), QmpError> {
    let _ = qmp.block_export_del(EXPORT_ID, false).await;
    qmp.nbd_server_stop().await
}

/// Destination: listen for the memory stream on `port`.
pub async fn listen_memory(qmp: &Qmp, port: u16, mptcp: bool) -> Result<(), QmpError> {
    qmp.migrate_incoming(
        &[MigrationChannel::main_inet("0.0.0.0", port, mptcp)],
        false,
    )
    .await
}

/// Source: mirror the data disk to the destination's NBD export.
pub async fn start_mirror(
    qmp: &Qmp,
    host: &str,
    port: u16,
    mptcp: bool,
    tls: bool,
    sync: MirrorSyncMode,
) -> Result<(), QmpError> {
    let mut server = json!({"type": "inet", "host": host, "port": port.to_string()});
    if mptcp {
        server["mptcp"] = json!(true);
    }
    let mut node = json!({
        "driver": "nbd",
        "node-name": TARGET_NODE,
        "server": server,
        "export": EXPORT_NAME,
    });
    if tls {
        node["tls-creds"] = json!(TLS_OBJECT);
    }
    qmp.blockdev_add(node).await?;
    let mut args = MirrorArgs::new(DISK_NODE, TARGET_NODE, sync);
    args.job_id = Some(MIRROR_JOB.into());
    if let Err(e) = qmp.blockdev_mirror(&args).await {
        let _ = qmp.blockdev_del(TARGET_NODE).await;
        return Err(e);
    }
    Ok(())
}

/// Source: the mirror job, if it exists.
pub async fn mirror_job(qmp: &Qmp) -> Result<Option<BlockJobInfo>, QmpError> {
    Ok(qmp
        .query_block_jobs()
        .await?
        .into_iter()
        .find(|j| j.device == MIRROR_JOB))
}

/// Source: ends the mirror. `graceful` on a ready job flushes what is left
/// and leaves the destination disk consistent (it does not pivot); forced
/// cancellation just stops. Then the NBD client node goes away.
pub async fn end_mirror(qmp: &Qmp, graceful: bool) -> Result<(), QmpError> {
    if mirror_job(qmp).await?.is_some() {
        qmp.block_job_cancel(MIRROR_JOB, !graceful).await?;
        for _ in 0..3000 {
            if mirror_job(qmp).await?.is_none() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    match qmp.blockdev_del(TARGET_NODE).await {
        Ok(()) => Ok(()),
        Err(e) if e.qemu_class().is_some() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Source: start the memory stream to `host:port`.
pub async fn start_memory(qmp: &Qmp, host: &str, port: u16, mptcp: bool) -> Result<(), QmpError> {
    qmp.migrate(&[MigrationChannel::main_inet(host, port, mptcp)])
        .await
}

/// Applies migration parameters (QEMU names) when there are any.
pub async fn set_parameters(qmp: &Qmp, params: &Value) -> Result<(), QmpError> {
    if params.as_object().is_some_and(|o| !o.is_empty()) {
        qmp.migrate_set_parameters(params.clone()).await?;
    }
    Ok(())
}
