//! Alice's VM: the Debian image imported at site-a and pushed to site-b,
//! a VM booting it through GRUB, nginx given MPTCP by the guest agent and
//! restarted so its listener is MPTCP, and the file it serves written.

use std::time::{Duration, Instant};

use edgemig_api::images::{ImagePush, ImagePushReport};
use edgemig_api::{ApiClient, VmCreate};
use edgemig_guest_proto::mptcp_apps::{MptcpAppsReport, MptcpScope, UnitState};
use edgemig_guest_proto::{GuestReply, GuestRequest};

use super::DemoError;

/// Longest wait for the guest agent after `vm start` (TCG boots of a
/// Debian image take 40–50 s on a busy 2-core machine).
const BOOT_LIMIT: Duration = Duration::from_secs(300);

/// Pushes the image `name` from site-a's cache to site-b, so that only
/// the VM's overlay travels when it moves there.
pub async fn push_image(a: &ApiClient, name: &str) -> Result<ImagePushReport, DemoError> {
    Ok(a.push_image(
        name,
        &ImagePush {
            to: "site-b".into(),
        },
    )
    .await?)
}

/// Creates and starts the VM at site-a (nginx.service in its MPTCP
/// scope) and waits for its guest agent; returns the time that took.
pub async fn boot(
    a: &ApiClient,
    vm: &str,
    image: &str,
    memory_mib: u64,
) -> Result<Duration, DemoError> {
    a.create_vm(&VmCreate {
        name: vm.into(),
        memory_mib,
        vcpus: 1,
        disk_mib: None,
        base_image: None,
        image: Some(image.into()),
        firmware: None,
        mptcp_apps: nginx_scope(),
    })
    .await?;
    let started = Instant::now();
    a.start_vm(vm).await?;
    loop {
        if a.guest(vm, &GuestRequest::Hello).await.is_ok() {
            return Ok(started.elapsed());
        }
        if started.elapsed() > BOOT_LIMIT {
            return Err(DemoError::Timeout(format!(
                "the guest agent of {vm} did not answer within {} s of its start",
                BOOT_LIMIT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn nginx_scope() -> MptcpScope {
    MptcpScope::Units(vec!["nginx.service".into()])
}

/// nginx started before the agent set its scope: restart it so its
/// listening socket is MPTCP. Returns the mechanism (`bpf`, `mptcpize`).
pub async fn mptcp_nginx(a: &ApiClient, vm: &str) -> Result<String, DemoError> {
    let reply = a
        .guest(
            vm,
            &GuestRequest::MptcpApps {
                scope: nginx_scope(),
                restart: true,
            },
        )
        .await?;
    let GuestReply::MptcpApps(MptcpAppsReport {
        mechanism, units, ..
    }) = reply
    else {
        return Err(DemoError::Guest(format!("unexpected answer {reply:?}")));
    };
    match units.first().map(|u| &u.state) {
        Some(UnitState::Active) => {}
        other => {
            return Err(DemoError::Guest(format!(
                "nginx.service did not get MPTCP: {other:?}"
            )));
        }
    }
    Ok(mechanism
        .map(|m| {
            serde_json::to_value(m)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        })
        .unwrap_or_default())
}

/// Writes `mib` MiB of seeded data to `path` in the guest; returns its
/// FNV-1a 64.
pub async fn write_file(
    a: &ApiClient,
    vm: &str,
    path: &str,
    mib: u32,
    seed: u64,
) -> Result<u64, DemoError> {
    let reply = a
        .guest(
            vm,
            &GuestRequest::DiskWrite {
                device: Some(path.into()),
                mib,
                offset_mib: 0,
                seed,
            },
        )
        .await?;
    match reply {
        GuestReply::Disk(d) if d.ok => Ok(d.checksum),
        other => Err(DemoError::Guest(format!("disk write: {other:?}"))),
    }
}
