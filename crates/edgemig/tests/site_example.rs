//! The example site config that the edgemig .deb installs as
//! `/etc/edgemig/site.toml.example` (`packaging/host/site.toml.example`)
//! loads as it is, and still loads with every optional field uncommented;
//! the host package ships the agent with its unit, config example, socket
//! tuning and the QEMU user's access to userfaultfd.

use std::path::{Path, PathBuf};

use edgemig_agent::SiteConfig;

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/host/site.toml.example")
}

fn load(path: &Path) -> SiteConfig {
    SiteConfig::load(path).unwrap_or_else(|e| {
        let mut msg = e.to_string();
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            msg.push_str(&format!("\n  caused by: {c}"));
            cause = c.source();
        }
        panic!("{}: {msg}", path.display())
    })
}

#[test]
fn packaged_example_loads_as_shipped() {
    let config = load(&example());
    assert_eq!(config.site, "site-a");
    assert_eq!(
        config.image_dir,
        Path::new("/usr/share/edgemig/guest-image")
    );
    assert_eq!(config.state_dir, Path::new("/var/lib/edgemig/site-a"));
    assert!(
        config.listen.is_none(),
        "listen needs [tls]: keep it commented"
    );
    assert!(config.peers.is_empty());
}

#[test]
fn packaged_example_loads_with_every_option_uncommented() {
    let text = std::fs::read_to_string(example()).expect("read the example");
    // `#key = value` and `#[section]` lines are options; `# text` is prose.
    let uncommented: String = text
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if !rest.is_empty() && !rest.starts_with([' ', '#']) => rest,
            _ => l,
        })
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(uncommented, text, "the example has no commented options");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("site.toml");
    std::fs::write(&path, &uncommented).expect("write");
    let config = load(&path);
    assert_eq!(config.peers.len(), 1);
    assert!(config.tls.is_some() && config.listen.is_some());
    assert!(config.directory.is_some());
    assert_eq!(config.handoff_grace_s, Some(60));
}

/// The host package `scripts/build.sh` writes (`scripts/package-debs.sh`).
fn host_deb() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!(
        "../../target/debian/edgemig_{}_amd64.deb",
        env!("CARGO_PKG_VERSION")
    ))
}

#[test]
fn the_host_package_ships_the_agent_its_unit_config_and_socket_tuning() {
    let deb = host_deb();
    assert!(
        deb.is_file(),
        "{} missing: scripts/build.sh writes it",
        deb.display()
    );
    let listing = std::process::Command::new("dpkg-deb")
        .arg("--contents")
        .arg(&deb)
        .output()
        .expect("dpkg-deb runs");
    assert!(listing.status.success());
    let listing = String::from_utf8_lossy(&listing.stdout);
    for file in [
        "./usr/bin/edgemigd",
        "./usr/bin/edgemig",
        "./usr/lib/systemd/system/edgemigd.service",
        "./etc/edgemig/site.toml.example",
        "./usr/lib/sysctl.d/60-edgemig.conf",
        "./usr/lib/udev/rules.d/60-edgemig-userfaultfd.rules",
    ] {
        assert!(
            listing.lines().any(|l| l.ends_with(file)),
            "{file} not in the package:\n{listing}"
        );
    }
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/host/60-edgemig.conf"),
    )
    .unwrap();
    let value = format!(
        "net.ipv4.tcp_notsent_lowat = {}",
        edgemig_netns::sysctl::MIGRATION_NOTSENT_LOWAT
    );
    assert!(
        shipped.lines().any(|l| l.trim() == value),
        "the packaged sysctl and the agent's recommendation differ:\n{shipped}"
    );
    let ports = format!(
        "net.ipv4.ip_local_reserved_ports = {}",
        edgemig_netns::sysctl::migration_reserved_ports()
    );
    assert!(
        shipped.lines().any(|l| l.trim() == ports),
        "the packaged sysctl does not reserve the migration ports:\n{shipped}"
    );
}
