//! Printing for humans and for scripts.

use edgemig_api::VmInfo;
use serde::Serialize;

/// Prints `value` as one JSON document.
pub fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// One table row per VM.
pub fn vm_table(vms: &[VmInfo]) {
    println!(
        "{:<20} {:<8} {:>8} {:>5} {:>8} {:<18} GUEST",
        "NAME", "STATE", "MEMORY", "VCPU", "DISK", "ADDRESS"
    );
    for vm in vms {
        let address = vm
            .nics
            .first()
            .and_then(|n| n.address.clone())
            .unwrap_or_default();
        let disk = vm
            .disk_mib
            .map_or_else(|| "-".to_string(), |d| format!("{d}M"));
        let guest = if vm.guest.is_some() { "ready" } else { "-" };
        println!(
            "{:<20} {:<8} {:>7}M {:>5} {:>8} {:<18} {guest}",
            vm.name, vm.state, vm.memory_mib, vm.vcpus, disk, address
        );
    }
}

/// Everything about one VM.
pub fn vm_details(vm: &VmInfo) {
    println!("name:       {}", vm.name);
    println!("state:      {}", vm.state);
    println!("memory:     {} MiB", vm.memory_mib);
    println!("vcpus:      {}", vm.vcpus);
    println!(
        "disk:       {}",
        vm.disk_mib
            .map_or_else(|| "none".to_string(), |d| format!("{d} MiB"))
    );
    match (&vm.image, vm.firmware) {
        (Some(image), Some(firmware)) => println!("boots:      {image} ({firmware})"),
        (Some(image), None) => println!("boots:      {image}"),
        _ => println!("boots:      built-in guest"),
    }
    if let Some(base) = &vm.base_image {
        println!("base image: {base}");
    }
    println!(
        "pid:        {}",
        vm.pid.map_or_else(|| "-".to_string(), |p| p.to_string())
    );
    match &vm.guest {
        Some(g) => println!(
            "guest:      ready (edgemig-guest {}, protocol {}, booted in {} ms)",
            g.version, g.protocol, g.boot_ms
        ),
        None => println!("guest:      not ready"),
    }
    for nic in &vm.nics {
        println!(
            "{}:       mac {} tap {} bridge {} link {} address {}",
            nic.name,
            nic.mac,
            nic.tap,
            nic.bridge.as_deref().unwrap_or("-"),
            if nic.link_up { "up" } else { "down" },
            nic.address.as_deref().unwrap_or("-")
        );
    }
    if let Some(policy) = &vm.policy {
        match &policy.spec {
            edgemig_api::PolicySpec::Follow(p) => println!("policy:     {p}"),
            edgemig_api::PolicySpec::None => println!("policy:     none"),
        }
        println!("controller: {}", policy.status);
        if let Some(why) = &policy.explanation {
            for line in why.lines() {
                println!("decision:   {line}");
            }
        }
    }
    println!("serial log: {}", vm.serial_log);
    println!("qmp:        {}", vm.qmp_socket);
}
