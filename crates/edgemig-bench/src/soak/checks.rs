//! Where the soak's VM is, and what must not be left: the settle check
//! after each migration (the VM runs at exactly one site, the other site's
//! agent does not have it, no migration of it runs), and the leak checks
//! after the soak, before and after the testbed is removed.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use edgemig_api::{ErrorCode, VmInfo, VmState};
use edgemig_guest_proto::SERVICE_PORT;

use super::bed::Bed;
use super::watch::qemu_pid;

/// What one site's agent says about the VM.
#[derive(Debug, Clone, PartialEq)]
enum Held {
    Vm(Box<VmInfo>),
    Absent,
    Unreachable(String),
}

async fn held(bed: &Bed, site: usize, vm: &str) -> Held {
    match bed.sites[site].api.vm(vm).await {
        Ok(info) => Held::Vm(Box::new(info)),
        Err(e) if e.code() == Some(ErrorCode::NotFound) => Held::Absent,
        Err(e) => Held::Unreachable(e.to_string()),
    }
}

/// Whether a migration of `vm` driven from `site` runs (`None`: the agent
/// did not answer).
async fn migrating(bed: &Bed, site: usize, vm: &str) -> Option<bool> {
    match bed.sites[site].api.migration(vm).await {
        Ok(view) => Some(view.running),
        Err(e) if e.code() == Some(ErrorCode::NotFound) => Some(false),
        Err(_) => None,
    }
}

/// One look: the site running the VM when it is settled, else what was
/// seen.
pub async fn settled(bed: &Bed, vm: &str) -> Result<usize, String> {
    let (a, b) = tokio::join!(held(bed, 0, vm), held(bed, 1, vm));
    let (ma, mb) = tokio::join!(migrating(bed, 0, vm), migrating(bed, 1, vm));
    let running = |h: &Held| matches!(h, Held::Vm(i) if i.state == VmState::Running);
    let seen = || {
        let d = |h: &Held, m: Option<bool>| {
            let h = match h {
                Held::Vm(i) => i.state.to_string(),
                Held::Absent => "no VM".into(),
                Held::Unreachable(e) => format!("agent unreachable ({e})"),
            };
            match m {
                Some(true) => format!("{h}, migrating"),
                Some(false) => h,
                None => format!("{h}, migrations unknown"),
            }
        };
        format!(
            "{}: {}; {}: {}",
            bed.sites[0].name,
            d(&a, ma),
            bed.sites[1].name,
            d(&b, mb)
        )
    };
    if ma != Some(false) || mb != Some(false) {
        return Err(seen());
    }
    match (&a, &b) {
        (x, Held::Absent) if running(x) => Ok(0),
        (Held::Absent, y) if running(y) => Ok(1),
        (Held::Absent, Held::Absent) => Err(format!("the VM is at neither site: {}", seen())),
        _ => Err(seen()),
    }
}

/// Waits up to `limit` until the VM is settled; the site, or what was
/// seen last.
pub async fn wait_settled(bed: &Bed, vm: &str, limit: Duration) -> Result<usize, String> {
    let deadline = Instant::now() + limit;
    loop {
        match settled(bed, vm).await {
            Ok(site) => return Ok(site),
            Err(seen) if Instant::now() >= deadline => return Err(seen),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// The address alice reaches the VM's service at: its NIC with carrier
/// and an address.
pub fn service_address(info: &VmInfo) -> Option<SocketAddr> {
    let nic = info
        .nics
        .iter()
        .find(|n| n.link_up && n.address.is_some())
        .or_else(|| info.nics.iter().find(|n| n.address.is_some()))?;
    let ip: IpAddr = nic.address.as_deref()?.split('/').next()?.parse().ok()?;
    Some(SocketAddr::new(ip, SERVICE_PORT))
}

/// Live QEMU processes started for the testbed in `dir` (their command
/// line names it), with their command line.
fn testbed_processes(dir: &Path) -> Vec<(u32, String)> {
    let marker = dir.display().to_string();
    let Ok(proc) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    proc.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
            (cmd.contains(&marker) && edgemig_testbed::process::alive(pid))
                .then(|| (pid, cmd.trim().to_string()))
        })
        .collect()
}

/// Network devices of a namespace.
fn devices(netns: &str) -> Result<Vec<String>, String> {
    let argv = ["ip", "-o", "link", "show"].map(String::from);
    let out = edgemig_testbed::process::output_in(netns, &argv).map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let name = l.split(": ").nth(1)?;
            Some(name.split('@').next()?.trim().to_string())
        })
        .collect())
}

/// What is left that should not be. With the VM settled at `host`: QEMU
/// processes other than the VM's, the VM's record or files at the other
/// site, tunnel devices (`emvx*`, `emtb*`) at either site, TAP devices
/// (`emv*`) other than the VM's own, and migrations still running. When it
/// did not settle (`None`), only QEMU processes without a VM record at
/// their site and running migrations are listed (the rest may be the
/// unsettled migration's).
pub async fn leaks_before_teardown(bed: &Bed, vm: &str, host: Option<usize>) -> Vec<String> {
    let mut leaks = Vec::new();
    let info = match host {
        Some(h) => match held(bed, h, vm).await {
            Held::Vm(info) => Some(info),
            other => {
                leaks.push(format!(
                    "the VM is not at {} any more ({other:?})",
                    bed.sites[h].name
                ));
                None
            }
        },
        None => None,
    };
    let holders = [held(bed, 0, vm).await, held(bed, 1, vm).await];
    let expected = host.and_then(|h| qemu_pid(&bed.sites[h].state_dir.join("vms").join(vm), vm));
    for (pid, cmd) in testbed_processes(&bed.dir) {
        if !cmd.contains("qemu-system") || Some(pid) == expected {
            continue;
        }
        let site = bed
            .sites
            .iter()
            .position(|s| cmd.contains(&s.state_dir.display().to_string()));
        let recorded = site.is_some_and(|i| matches!(holders[i], Held::Vm(_)));
        if host.is_some() || !recorded {
            let name = site.map_or("?", |i| bed.sites[i].name.as_str());
            leaks.push(format!("QEMU process {pid} at {name}"));
        }
    }
    if let Some(h) = host {
        let other = 1 - h;
        match &holders[other] {
            Held::Absent => {}
            x => leaks.push(format!("VM record at {}: {x:?}", bed.sites[other].name)),
        }
        let files = bed.sites[other].state_dir.join("vms").join(vm);
        if files.exists() {
            leaks.push(format!(
                "VM files at {}: {}",
                bed.sites[other].name,
                files.display()
            ));
        }
        let own_taps: Vec<String> = info
            .iter()
            .flat_map(|i| i.nics.iter().map(|n| n.tap.clone()))
            .collect();
        for (i, site) in bed.sites.iter().enumerate() {
            match devices(&site.netns) {
                Ok(devs) => {
                    for d in devs {
                        let ours = d.starts_with("emv") || d.starts_with("emtb");
                        let allowed = i == h && own_taps.contains(&d);
                        if ours && !allowed {
                            leaks.push(format!("device {d} at {}", site.name));
                        }
                    }
                }
                Err(e) => leaks.push(format!("cannot list devices at {}: {e}", site.name)),
            }
        }
    }
    for site in &bed.sites {
        if let Ok(all) = site.api.migrations().await {
            for m in all.iter().filter(|m| m.running) {
                leaks.push(format!(
                    "migration {} of {} still running at {} (phase {})",
                    m.id,
                    m.vm,
                    site.name,
                    m.phase.as_deref().unwrap_or("?")
                ));
            }
        }
    }
    leaks
}

/// What is left of testbed `name` (directory `dir`) after it was
/// removed: namespaces with its prefix, processes naming its directory,
/// the directory itself.
pub fn leaks_after_teardown(name: &str, dir: &Path) -> Vec<String> {
    let mut leaks = Vec::new();
    let prefix = format!("{name}_");
    if let Ok(entries) = std::fs::read_dir("/run/netns") {
        for e in entries.flatten() {
            let ns = e.file_name().to_string_lossy().into_owned();
            if ns.starts_with(&prefix) {
                leaks.push(format!("namespace {ns} after teardown"));
            }
        }
    }
    for (pid, cmd) in testbed_processes(dir) {
        let short: String = cmd.chars().take(80).collect();
        leaks.push(format!("process {pid} after teardown: {short}"));
    }
    if dir.exists() {
        leaks.push(format!("directory {} after teardown", dir.display()));
    }
    leaks
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgemig_api::NicInfo;

    fn nic(name: &str, up: bool, address: Option<&str>) -> NicInfo {
        NicInfo {
            name: name.into(),
            mac: "52:54:00:00:00:01".into(),
            tap: format!("emv1n{}", &name[3..]),
            bridge: None,
            link_up: up,
            address: address.map(str::to_string),
        }
    }

    #[test]
    fn the_service_address_is_the_nic_with_carrier() {
        let mut info: VmInfo = serde_json::from_value(serde_json::json!({
            "name": "soak", "state": "running", "memory_mib": 128, "vcpus": 1,
            "disk_mib": null, "pid": null, "nics": [], "guest": null,
            "serial_log": "", "qmp_socket": ""
        }))
        .unwrap();
        assert_eq!(service_address(&info), None);
        info.nics = vec![
            nic("nic0", false, Some("10.10.0.2/24")),
            nic("nic1", true, Some("10.20.0.3/24")),
        ];
        assert_eq!(
            service_address(&info),
            Some(SocketAddr::from(([10, 20, 0, 3], SERVICE_PORT)))
        );
        info.nics[1].address = None;
        assert_eq!(
            service_address(&info),
            Some(SocketAddr::from(([10, 10, 0, 2], SERVICE_PORT)))
        );
    }

    #[test]
    fn nothing_is_left_of_a_testbed_that_never_was() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("never");
        assert!(leaks_after_teardown("zzsoaknone", &gone).is_empty());
        std::fs::create_dir(&gone).unwrap();
        assert_eq!(leaks_after_teardown("zzsoaknone", &gone).len(), 1);
    }
}
