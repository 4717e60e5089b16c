//! The system configuration written into the root file system: host name,
//! `fstab` by UUID, a locked root password, units masked for fast boots
//! under TCG, and either the guest agent (its .deb, unit enabled, NICs left
//! to it) or DHCP by systemd-networkd on every Ethernet NIC.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use super::chroot::Chroot;
use super::disk::DiskIds;
use super::error::DistroError;

/// Host name of the image.
pub const HOSTNAME: &str = "edgemig-debian12";

/// Units masked in every image, and why: they slow the boot under TCG or
/// do work nobody wants in an edgemig VM.
pub const MASKED_UNITS: &[(&str, &str)] = &[
    (
        "apt-daily.timer",
        "apt downloads in the background: CPU, network and dirtied memory (longer migrations) in a VM that may have no route out",
    ),
    (
        "apt-daily-upgrade.timer",
        "unattended upgrades, same reason",
    ),
    ("dpkg-db-backup.timer", "daily copy of the dpkg database"),
    (
        "e2scrub_all.timer",
        "weekly ext4 metadata scrub, only works on LVM volumes",
    ),
    (
        "e2scrub_reap.service",
        "runs at every boot (about 2 s under TCG), only for LVM snapshots",
    ),
];

/// Where the guest agent's unit is enabled (its [Install] WantedBy).
pub const AGENT_WANTS_LINK: &str =
    "etc/systemd/system/dev-virtio\\x2dports-org.edgemig.agent.device.wants/edgemig-guest.service";

/// The no-agent image's network: DHCP on every Ethernet NIC.
pub const DHCP_NETWORK: &str = "\
# edgemig image without the guest agent: DHCP on every Ethernet NIC
# (the site's DHCP server hands out the VM's address by MAC).
[Match]
Type=ether
Name=eth*

[Network]
DHCP=ipv4
";

/// systemd-networkd-wait-online waits for one NIC, not all: an edgemig
/// VM's second NIC has no carrier until a migration.
const WAIT_ONLINE_ANY: &str = "\
# edgemig: one configured NIC is enough (nic1 has no carrier before a migration).
[Service]
ExecStart=
ExecStart=/lib/systemd/systemd-networkd-wait-online --any
";

/// Everything this builder writes into an image besides the root file
/// system (part of the image cache key).
pub(crate) fn recipe() -> String {
    format!(
        "{HOSTNAME}\n{MASKED_UNITS:?}\n{AGENT_WANTS_LINK}\n{DHCP_NETWORK}{WAIT_ONLINE_ANY}{}\n{:?}\n",
        super::bootloader::grub_defaults(),
        [
            super::disk::BIOS_BOOT_START,
            super::disk::ESP_START,
            super::disk::ESP_BYTES,
            super::disk::ROOT_START
        ],
    )
}

/// Writes host name, hosts, resolver, fstab; locks root; masks units.
/// Returns the units masked.
pub(crate) fn system(chroot: &Chroot, ids: &DiskIds) -> Result<Vec<String>, DistroError> {
    let root = chroot.root();
    write(root, "etc/hostname", &format!("{HOSTNAME}\n"))?;
    write(
        root,
        "etc/hosts",
        &format!(
            "127.0.0.1\tlocalhost\n127.0.1.1\t{HOSTNAME}\n\n::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
        ),
    )?;
    // mmdebstrap copies the build host's resolv.conf; a package may have
    // made it a link (systemd-resolved): keep that.
    let resolv = root.join("etc/resolv.conf");
    let is_link = fs::symlink_metadata(&resolv).is_ok_and(|m| m.file_type().is_symlink());
    if !is_link {
        write(
            root,
            "etc/resolv.conf",
            "# No name servers configured (edgemig image). DHCP-provided ones need systemd-resolved.\n",
        )?;
    }
    write(
        root,
        "etc/fstab",
        &format!(
            "# <file system> <mount point> <type> <options> <dump> <pass>\n\
             UUID={} / ext4 errors=remount-ro 0 1\n\
             UUID={} /boot/efi vfat umask=0077,noauto,nofail,x-systemd.automount,x-systemd.idle-timeout=60 0 0\n",
            ids.root_fs,
            ids.esp_fs_uuid()
        ),
    )?;
    let efi = root.join("boot/efi");
    fs::create_dir_all(&efi).map_err(DistroError::io(&efi))?;
    chroot.cmd("passwd").args(["--lock", "root"]).run()?;
    let shadow = fs::read_to_string(root.join("etc/shadow"))
        .map_err(DistroError::io(root.join("etc/shadow")))?;
    if !root_is_locked(&shadow) {
        return Err(DistroError::Check("root's password is not locked".into()));
    }
    mask(root)
}

/// Whether root's password field in `shadow` allows no password login.
fn root_is_locked(shadow: &str) -> bool {
    shadow
        .lines()
        .find_map(|l| l.strip_prefix("root:"))
        .and_then(|rest| rest.split(':').next())
        .is_some_and(|hash| hash.starts_with('!') || hash.starts_with('*'))
}

/// Masks [`MASKED_UNITS`] that exist in the image (a link to /dev/null in
/// /etc/systemd/system, as `systemctl mask` makes).
fn mask(root: &Path) -> Result<Vec<String>, DistroError> {
    let mut masked = Vec::new();
    for (unit, _why) in MASKED_UNITS {
        if !root.join("usr/lib/systemd/system").join(unit).exists() {
            continue;
        }
        let link = root.join("etc/systemd/system").join(unit);
        let _ = fs::remove_file(&link);
        symlink("/dev/null", &link).map_err(DistroError::io(&link))?;
        masked.push(unit.to_string());
    }
    Ok(masked)
}

/// Installs the guest agent package and checks its unit is enabled.
pub(crate) fn install_agent(chroot: &Chroot, deb: &Path) -> Result<(), DistroError> {
    let root = chroot.root();
    let inside = "tmp/edgemig-guest.deb";
    fs::copy(deb, root.join(inside)).map_err(DistroError::io(deb))?;
    let installed = chroot
        .cmd("dpkg")
        .args(["--install", &format!("/{inside}")])
        .run();
    let _ = fs::remove_file(root.join(inside));
    installed?;
    for (what, rel) in [
        ("the agent binary", "usr/bin/edgemig-guest"),
        ("the agent's enablement link", AGENT_WANTS_LINK),
        (
            "the networkd file",
            "usr/lib/systemd/network/05-edgemig.network",
        ),
    ] {
        if fs::symlink_metadata(root.join(rel)).is_err() {
            return Err(DistroError::Check(format!(
                "{what} /{rel} is missing after installing {}",
                deb.display()
            )));
        }
    }
    Ok(())
}

/// Configures DHCP by systemd-networkd on every Ethernet NIC.
pub(crate) fn network_dhcp(chroot: &Chroot) -> Result<(), DistroError> {
    let root = chroot.root();
    write(
        root,
        "etc/systemd/network/80-edgemig-dhcp.network",
        DHCP_NETWORK,
    )?;
    write(
        root,
        "etc/systemd/system/systemd-networkd-wait-online.service.d/edgemig.conf",
        WAIT_ONLINE_ANY,
    )?;
    chroot
        .cmd("systemctl")
        .args(["enable", "systemd-networkd.service"])
        .run()
        .map(drop)
}

/// Last step: empties /tmp and marks /etc and /var as up to date with
/// /usr, as `systemd-update-done` would (Debian does not ship it), so units
/// with `ConditionNeedsUpdate=` (systemd-sysusers) do not run at every boot.
pub(crate) fn finish(chroot: &Chroot) -> Result<(), DistroError> {
    let root = chroot.root();
    let tmp = root.join("tmp");
    for entry in fs::read_dir(&tmp).map_err(DistroError::io(&tmp))? {
        let path = entry.map_err(DistroError::io(&tmp))?.path();
        let r = if path.is_dir() && !path.is_symlink() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        r.map_err(DistroError::io(&path))?;
    }
    mark_updated(root)
}

/// Writes `/etc/.updated` and `/var/.updated` with /usr's modification time
/// (as mtime and as `TIMESTAMP_NSEC=`, what ConditionNeedsUpdate compares).
fn mark_updated(root: &Path) -> Result<(), DistroError> {
    let usr = root.join("usr");
    let mtime = fs::metadata(&usr)
        .and_then(|m| m.modified())
        .map_err(DistroError::io(&usr))?;
    let nsec = mtime
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    for dir in ["etc", "var"] {
        let path = root.join(dir).join(".updated");
        fs::write(
            &path,
            format!(
                "# This file was created by edgemig image build, as systemd-update-done does.\n\
                 # It holds the time /usr was last updated (man:systemd-update-done.service(8)).\n\
                 TIMESTAMP_NSEC={nsec}\n"
            ),
        )
        .and_then(|()| {
            fs::File::options()
                .write(true)
                .open(&path)?
                .set_modified(mtime)
        })
        .map_err(DistroError::io(&path))?;
    }
    Ok(())
}

/// Writes `root/rel`, creating its directory.
fn write(root: &Path, rel: &str, text: &str) -> Result<(), DistroError> {
    let path = root.join(rel);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(DistroError::io(parent))?;
    }
    fs::write(&path, text).map_err(DistroError::io(&path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_lock_is_read_from_shadow() {
        assert!(root_is_locked("daemon:*:1::\nroot:!*:20789:0:99999:7:::\n"));
        assert!(root_is_locked("root:*:20789:0:99999:7:::\n"));
        assert!(!root_is_locked("root:$y$j9T$abc:20789:0:99999:7:::\n"));
        assert!(!root_is_locked("root::20789:0:99999:7:::\n"));
        assert!(!root_is_locked("daemon:*:1::\n"));
    }

    #[test]
    fn updated_stamps_carry_the_time_of_usr() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in ["usr", "etc", "var"] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        mark_updated(root).unwrap();
        let usr = fs::metadata(root.join("usr")).unwrap().modified().unwrap();
        for d in ["etc", "var"] {
            let path = root.join(d).join(".updated");
            assert_eq!(fs::metadata(&path).unwrap().modified().unwrap(), usr);
            let ns = usr
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            assert!(
                fs::read_to_string(&path)
                    .unwrap()
                    .contains(&format!("TIMESTAMP_NSEC={ns}\n"))
            );
        }
    }

    #[test]
    fn masks_only_units_that_exist() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("usr/lib/systemd/system")).unwrap();
        fs::create_dir_all(root.join("etc/systemd/system")).unwrap();
        fs::write(root.join("usr/lib/systemd/system/apt-daily.timer"), "").unwrap();
        let masked = mask(root).unwrap();
        assert_eq!(masked, ["apt-daily.timer"]);
        let target = fs::read_link(root.join("etc/systemd/system/apt-daily.timer")).unwrap();
        assert_eq!(target, Path::new("/dev/null"));
    }
}
