//! Alice's VM: the Debian image imported at site-a and pushed to site-b,
//! a VM booting it through GRUB, nginx given MPTCP by the guest agent and
//! restarted so its listener is MPTCP, and the file it serves written and
//! reachable from alice.

use std::time::{Duration, Instant};

use edgemig_api::images::{ImagePush, ImagePushReport};
use edgemig_api::{ApiClient, ImageImport, ImageInfo, VmCreate};
use edgemig_guest_proto::mptcp_apps::{MptcpAppsReport, MptcpScope, UnitState};
use edgemig_guest_proto::{GuestReply, GuestRequest};

use super::{DemoError, DemoOptions, FILE, FILE_MIB, FILE_SEED, IMAGE, VM, say};

/// Longest wait for the guest agent after `vm start` (TCG boots of a
/// Debian image take 40–50 s on a busy 2-core machine).
const BOOT_LIMIT: Duration = Duration::from_secs(300);

/// Alice's VM, serving.
pub struct Ready {
    /// site-a's cache entry of the image.
    pub imported: ImageInfo,
    /// Its push to site-b.
    pub push: ImagePushReport,
    /// From `vm start` to the guest agent's answer.
    pub boot: Duration,
    /// How nginx got MPTCP.
    pub mechanism: String,
    /// FNV-1a 64 of the file nginx serves.
    pub checksum: u64,
    /// The VM's address at site-a.
    pub ip: String,
}

/// Longest wait for nginx to answer alice once the guest agent is up.
const NGINX_LIMIT: Duration = Duration::from_secs(60);

/// Stages the image at both sites, boots the VM at site-a, gives nginx
/// MPTCP and writes the file it serves; returns once alice (in `alice`)
/// can fetch it.
pub async fn prepare(a: &ApiClient, alice: &str, opts: &DemoOptions) -> Result<Ready, DemoError> {
    let live = opts.live;
    say(
        live,
        &format!(
            "importing the Debian 12 image ({}) at site-a; pushing it to site-b while alice's VM boots",
            opts.packages.join(", ")
        ),
    );
    let imported = a
        .import_image(&ImageImport {
            path: opts.debian_image.display().to_string(),
            name: Some(IMAGE.into()),
            firmware: None,
        })
        .await?;
    let (push, boot) = tokio::try_join!(push_image(a, IMAGE), boot(a, VM, IMAGE, opts.memory_mib))?;
    say(
        live,
        &format!(
            "image at site-b: {:.0} MiB sent in {:.1} s; VM booted through GRUB and systemd in {:.1} s",
            push.wire_bytes as f64 / 1_048_576.0,
            push.total_ms as f64 / 1000.0,
            boot.as_secs_f64()
        ),
    );
    let mechanism = mptcp_nginx(a, VM).await?;
    let checksum = write_file(a, VM, FILE, FILE_MIB, FILE_SEED).await?;
    let ip = a
        .vm(VM)
        .await?
        .nics
        .first()
        .and_then(|n| n.address.as_deref())
        .and_then(|a| a.split('/').next())
        .unwrap_or_default()
        .to_string();
    let url = format!("http://{ip}/demo.bin");
    let waiting = Instant::now();
    while !super::curl::reachable(alice, &url) {
        if waiting.elapsed() > NGINX_LIMIT {
            return Err(DemoError::Timeout(format!(
                "nginx did not answer alice at {url}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(Ready {
        imported,
        push,
        boot,
        mechanism,
        checksum,
        ip,
    })
}

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
        image: Some(image.into()),
        mptcp_apps: nginx_scope(),
        ..VmCreate::builtin(vm, memory_mib)
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
