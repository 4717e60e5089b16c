//! Typed helpers for the QMP commands edgemig uses, and their argument
//! structs (serialized with QAPI's kebab-case names; `None` fields are
//! left out so QEMU applies its defaults).
//!
//! Helpers that take a raw `Value` (`blockdev_add`, `object_add`,
//! `migrate_set_parameters`) pass it through unchanged: those schemas are
//! large and change between QEMU releases.

use serde::Serialize;
use serde_json::{Value, json};

use crate::address::{InetSocketAddress, MigrationChannel, SocketAddress};
use crate::client::Qmp;
use crate::error::{QmpError, Result};
use crate::types::{
    BlockJobInfo, MigrationCapability, MigrationInfo, MirrorCopyMode, MirrorSyncMode, StatusInfo,
    VersionInfo,
};

/// Arguments of `blockdev-mirror`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct MirrorArgs {
    /// Job id; defaults to `device` in QEMU when omitted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// Source node name.
    pub device: String,
    /// Target node name (e.g. an NBD client node).
    pub target: String,
    pub sync: MirrorSyncMode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaces: Option<String>,
    /// Bytes per second, 0 = unlimited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speed: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub granularity: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buf_size: Option<u64>,
    /// `report` | `ignore` | `enospc` | `stop` | `auto`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_source_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_target_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter_node_name: Option<String>,
    /// `write-blocking` makes guest writes synchronous to the target once
    /// the job is ready, so the mirror cannot fall behind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub copy_mode: Option<MirrorCopyMode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_finalize: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_dismiss: Option<bool>,
}

impl MirrorArgs {
    /// Mirror `device` onto `target` with `sync`, everything else default.
    pub fn new(device: impl Into<String>, target: impl Into<String>, sync: MirrorSyncMode) -> Self {
        MirrorArgs {
            job_id: None,
            device: device.into(),
            target: target.into(),
            sync,
            replaces: None,
            speed: None,
            granularity: None,
            buf_size: None,
            on_source_error: None,
            on_target_error: None,
            filter_node_name: None,
            copy_mode: None,
            auto_finalize: None,
            auto_dismiss: None,
        }
    }
}

/// Arguments of `nbd-server-start`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NbdServerArgs {
    /// Where to listen (set `mptcp` on it for MPTCP).
    pub addr: SocketAddress,
    /// Id of a `tls-creds-x509` object.
    pub tls_creds: Option<String>,
    /// Id of an authz object restricting client certificates.
    pub tls_authz: Option<String>,
    pub max_connections: Option<u32>,
}

impl NbdServerArgs {
    /// Listen on `host:port`, optionally MPTCP, no TLS.
    pub fn inet(host: impl Into<String>, port: u16, mptcp: bool) -> Self {
        NbdServerArgs {
            addr: InetSocketAddress::new(host, port).with_mptcp(mptcp).into(),
            tls_creds: None,
            tls_authz: None,
            max_connections: None,
        }
    }

    fn to_value(&self) -> Value {
        let mut v = json!({ "addr": self.addr.to_legacy() });
        if let Some(c) = &self.tls_creds {
            v["tls-creds"] = c.as_str().into();
        }
        if let Some(a) = &self.tls_authz {
            v["tls-authz"] = a.as_str().into();
        }
        if let Some(m) = self.max_connections {
            v["max-connections"] = m.into();
        }
        v
    }
}

/// Arguments of `block-export-add` for an NBD export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct NbdExportArgs {
    /// Export id (for `block-export-del`).
    pub id: String,
    /// Node to export.
    pub node_name: String,
    /// NBD export name; defaults to `node_name` in QEMU.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writable: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl NbdExportArgs {
    /// Export `node_name` under the NBD name `name`.
    pub fn new(
        id: impl Into<String>,
        node_name: impl Into<String>,
        name: impl Into<String>,
        writable: bool,
    ) -> Self {
        NbdExportArgs {
            id: id.into(),
            node_name: node_name.into(),
            name: Some(name.into()),
            writable: Some(writable),
            description: None,
        }
    }
}

fn to_args<T: Serialize>(command: &str, args: &T) -> Result<Option<Value>> {
    serde_json::to_value(args)
        .map(Some)
        .map_err(|source| QmpError::Decode {
            command: command.to_owned(),
            source,
        })
}

impl Qmp {
    async fn unit(&self, command: &str, arguments: Option<Value>) -> Result<()> {
        self.execute(command, arguments).await.map(drop)
    }

    // ---- VM and run state ------------------------------------------------

    pub async fn query_version(&self) -> Result<VersionInfo> {
        self.execute_as("query-version", None).await
    }

    pub async fn query_status(&self) -> Result<StatusInfo> {
        self.execute_as("query-status", None).await
    }

    /// The `-name` of the VM, if any.
    pub async fn query_name(&self) -> Result<Option<String>> {
        let v = self.execute("query-name", None).await?;
        Ok(v.get("name").and_then(Value::as_str).map(str::to_owned))
    }

    /// `query-pci`, raw (a list of buses with their devices).
    pub async fn query_pci(&self) -> Result<Value> {
        self.execute("query-pci", None).await
    }

    /// Resume the vCPUs (also leaves `prelaunch` / `inmigrate` after `-S`).
    pub async fn cont(&self) -> Result<()> {
        self.unit("cont", None).await
    }

    /// Pause the vCPUs.
    pub async fn stop(&self) -> Result<()> {
        self.unit("stop", None).await
    }

    /// Make QEMU exit. The connection closing right away (before or after
    /// the reply) counts as success.
    pub async fn quit(&self) -> Result<()> {
        match self.unit("quit", None).await {
            Err(QmpError::ConnectionClosed) => Ok(()),
            other => other,
        }
    }

    /// ACPI power button.
    pub async fn system_powerdown(&self) -> Result<()> {
        self.unit("system_powerdown", None).await
    }

    pub async fn system_reset(&self) -> Result<()> {
        self.unit("system_reset", None).await
    }

    /// Carrier on/off for the NIC whose netdev or device id is `name`.
    pub async fn set_link(&self, name: &str, up: bool) -> Result<()> {
        self.unit("set_link", Some(json!({"name": name, "up": up})))
            .await
    }

    // ---- migration -------------------------------------------------------

    pub async fn query_migrate(&self) -> Result<MigrationInfo> {
        self.execute_as("query-migrate", None).await
    }

    pub async fn migrate_set_capabilities(
        &self,
        capabilities: &[(MigrationCapability, bool)],
    ) -> Result<()> {
        let caps: Vec<Value> = capabilities
            .iter()
            .map(|(c, on)| json!({"capability": c, "state": on}))
            .collect();
        self.unit(
            "migrate-set-capabilities",
            Some(json!({ "capabilities": caps })),
        )
        .await
    }

    /// `query-migrate-capabilities`, raw (list of `{capability, state}`).
    pub async fn query_migrate_capabilities(&self) -> Result<Value> {
        self.execute("query-migrate-capabilities", None).await
    }

    /// e.g. `json!({"multifd-channels": 4, "multifd-compression": "zstd",
    /// "downtime-limit": 300, "max-bandwidth": 0})`.
    pub async fn migrate_set_parameters(&self, parameters: Value) -> Result<()> {
        self.unit("migrate-set-parameters", Some(parameters)).await
    }

    pub async fn query_migrate_parameters(&self) -> Result<Value> {
        self.execute("query-migrate-parameters", None).await
    }

    /// Start an outgoing migration. Returns once it started; follow it with
    /// `MIGRATION` events (capability `events`) or [`Self::query_migrate`].
    pub async fn migrate(&self, channels: &[MigrationChannel]) -> Result<()> {
        self.unit("migrate", Some(json!({ "channels": channels })))
            .await
    }

    /// Resume a paused postcopy migration over new channels.
    pub async fn migrate_resume(&self, channels: &[MigrationChannel]) -> Result<()> {
        self.unit(
            "migrate",
            Some(json!({ "channels": channels, "resume": true })),
        )
        .await
    }

    /// Start listening for an incoming migration (QEMU started with
    /// `-incoming defer`). With `exit_on_error = false` QEMU stays alive
    /// after a failed incoming migration so that the caller can inspect it
    /// (QEMU's default is to exit).
    pub async fn migrate_incoming(
        &self,
        channels: &[MigrationChannel],
        exit_on_error: bool,
    ) -> Result<()> {
        self.unit(
            "migrate-incoming",
            Some(json!({ "channels": channels, "exit-on-error": exit_on_error })),
        )
        .await
    }

    pub async fn migrate_cancel(&self) -> Result<()> {
        self.unit("migrate_cancel", None).await
    }

    /// Let a migration paused in `pre-switchover` (capability
    /// `pause-before-switchover`) go on: the source sends its device state
    /// and the last dirty pages.
    pub async fn migrate_continue(&self) -> Result<()> {
        self.unit(
            "migrate-continue",
            Some(serde_json::json!({ "state": "pre-switchover" })),
        )
        .await
    }

    /// Switch a running precopy migration (capability `postcopy-ram`) to
    /// postcopy.
    pub async fn migrate_start_postcopy(&self) -> Result<()> {
        self.unit("migrate-start-postcopy", None).await
    }

    // ---- block -----------------------------------------------------------

    pub async fn query_block_jobs(&self) -> Result<Vec<BlockJobInfo>> {
        self.execute_as("query-block-jobs", None).await
    }

    /// `blockdev-add` with QAPI `BlockdevOptions`, e.g.
    /// `json!({"driver": "nbd", "node-name": "tgt0", "server": {"type":
    /// "inet", "host": "10.0.0.2", "port": "10809", "mptcp": true},
    /// "export": "disk0"})`.
    pub async fn blockdev_add(&self, options: Value) -> Result<()> {
        self.unit("blockdev-add", Some(options)).await
    }

    pub async fn blockdev_del(&self, node_name: &str) -> Result<()> {
        self.unit("blockdev-del", Some(json!({ "node-name": node_name })))
            .await
    }

    pub async fn blockdev_mirror(&self, args: &MirrorArgs) -> Result<()> {
        let a = to_args("blockdev-mirror", args)?;
        self.unit("blockdev-mirror", a).await
    }

    /// Cancel a block job. On a `ready` mirror this completes it without
    /// pivoting (the target stays a consistent copy).
    pub async fn block_job_cancel(&self, job: &str, force: bool) -> Result<()> {
        self.unit(
            "block-job-cancel",
            Some(json!({ "device": job, "force": force })),
        )
        .await
    }

    /// Complete a `ready` mirror job (pivot to the target).
    pub async fn block_job_complete(&self, job: &str) -> Result<()> {
        self.unit("block-job-complete", Some(json!({ "device": job })))
            .await
    }

    /// Bytes per second, 0 = unlimited.
    pub async fn block_job_set_speed(&self, job: &str, speed: u64) -> Result<()> {
        self.unit(
            "block-job-set-speed",
            Some(json!({ "device": job, "speed": speed })),
        )
        .await
    }

    /// Remove a concluded job (needed when it ran with `auto-dismiss: false`).
    pub async fn job_dismiss(&self, id: &str) -> Result<()> {
        self.unit("job-dismiss", Some(json!({ "id": id }))).await
    }

    // ---- NBD -------------------------------------------------------------

    pub async fn nbd_server_start(&self, args: &NbdServerArgs) -> Result<()> {
        self.unit("nbd-server-start", Some(args.to_value())).await
    }

    pub async fn nbd_server_stop(&self) -> Result<()> {
        self.unit("nbd-server-stop", None).await
    }

    pub async fn block_export_add(&self, args: &NbdExportArgs) -> Result<()> {
        let mut a = to_args("block-export-add", args)?.unwrap_or_default();
        a["type"] = "nbd".into();
        self.unit("block-export-add", Some(a)).await
    }

    /// Remove an export; `hard` disconnects its clients.
    pub async fn block_export_del(&self, id: &str, hard: bool) -> Result<()> {
        let mode = if hard { "hard" } else { "safe" };
        self.unit("block-export-del", Some(json!({ "id": id, "mode": mode })))
            .await
    }

    // ---- objects -----------------------------------------------------------

    /// `object-add`, e.g. `json!({"qom-type": "tls-creds-x509", "id":
    /// "tls0", "dir": "/etc/edgemig/pki", "endpoint": "server",
    /// "verify-peer": true})`.
    pub async fn object_add(&self, object: Value) -> Result<()> {
        self.unit("object-add", Some(object)).await
    }

    pub async fn object_del(&self, id: &str) -> Result<()> {
        self.unit("object-del", Some(json!({ "id": id }))).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_args_are_kebab_case_and_sparse() {
        let mut m = MirrorArgs::new("drive0", "tgt0", MirrorSyncMode::Top);
        m.job_id = Some("mirror0".into());
        m.copy_mode = Some(MirrorCopyMode::WriteBlocking);
        assert_eq!(
            serde_json::to_value(&m).unwrap(),
            json!({"job-id": "mirror0", "device": "drive0", "target": "tgt0",
                   "sync": "top", "copy-mode": "write-blocking"})
        );
    }

    #[test]
    fn nbd_server_uses_legacy_address() {
        let mut a = NbdServerArgs::inet("0.0.0.0", 10809, true);
        a.tls_creds = Some("tls0".into());
        assert_eq!(
            a.to_value(),
            json!({"addr": {"type": "inet", "data": {"host": "0.0.0.0", "port": "10809", "mptcp": true}},
                   "tls-creds": "tls0"})
        );
    }
}
