//! GRUB for both firmwares, installed with the guest's own GRUB packages
//! from inside the chroot: `grub-install --target=i386-pc` on the loop
//! device (boot sector + core image in the BIOS boot partition), an
//! x86_64-efi image written to the ESP's removable path
//! `EFI/BOOT/BOOTX64.EFI` (with mtools: the ESP is never mounted), and
//! `update-grub` for the one `/boot/grub/grub.cfg` both load. Settings go
//! to `/etc/default/grub.d/edgemig.cfg`, so kernel upgrades in the guest
//! (which run update-grub) keep them.

use std::fs;
use std::path::Path;

use super::chroot::Chroot;
use super::cmd::Cmd;
use super::disk::DiskIds;
use super::error::DistroError;
use super::loopdev::LoopDevice;

/// Kernel command line of the image (besides `root=UUID=...`, which
/// update-grub adds): the console on the first serial port, quiet,
/// classic NIC names (`eth0`, `eth1`: the names the host agent uses).
pub const KERNEL_CMDLINE: &str = "console=ttyS0 net.ifnames=0 quiet";

/// The image's GRUB settings.
pub(crate) fn grub_defaults() -> String {
    format!(
        "# edgemig: boot at once, on the serial console too.\n\
         GRUB_TIMEOUT=0\n\
         GRUB_TIMEOUT_STYLE=hidden\n\
         GRUB_RECORDFAIL_TIMEOUT=0\n\
         GRUB_CMDLINE_LINUX_DEFAULT=\"\"\n\
         GRUB_CMDLINE_LINUX=\"{KERNEL_CMDLINE}\"\n\
         GRUB_TERMINAL=\"serial console\"\n\
         GRUB_SERIAL_COMMAND=\"serial --unit=0 --speed=115200\"\n\
         GRUB_GFXPAYLOAD_LINUX=text\n\
         GRUB_DISABLE_OS_PROBER=true\n\
         GRUB_DISABLE_RECOVERY=true\n\
         GRUB_DISABLE_SUBMENU=y\n"
    )
}

/// Installs GRUB for BIOS and UEFI and writes grub.cfg.
pub(crate) fn install(chroot: &Chroot, dev: &LoopDevice, ids: &DiskIds) -> Result<(), DistroError> {
    let root = chroot.root();
    write(root, "etc/default/grub.d/edgemig.cfg", &grub_defaults())?;

    // BIOS: boot.img in the MBR, core.img in the BIOS boot partition.
    chroot
        .cmd("grub-install")
        .args(["--target=i386-pc", "--no-floppy"])
        .arg(dev.path())
        .run()?;

    // UEFI: a GRUB image that finds the root file system by UUID and reads
    // the same /boot/grub; its modules next to the i386-pc ones.
    let modules_from = root.join("usr/lib/grub/x86_64-efi");
    let modules_to = root.join("boot/grub/x86_64-efi");
    fs::create_dir_all(&modules_to).map_err(DistroError::io(&modules_to))?;
    for entry in fs::read_dir(&modules_from).map_err(DistroError::io(&modules_from))? {
        let path = entry.map_err(DistroError::io(&modules_from))?.path();
        if path.extension().is_some_and(|e| e == "mod" || e == "lst") {
            let to = modules_to.join(path.file_name().unwrap_or_default());
            fs::copy(&path, &to).map_err(DistroError::io(&to))?;
        }
    }
    write(
        root,
        "tmp/edgemig-efi.cfg",
        &format!(
            "search.fs_uuid {} root\nset prefix=($root)/boot/grub\n",
            ids.root_fs
        ),
    )?;
    chroot
        .cmd("grub-mkimage")
        .args([
            "-O",
            "x86_64-efi",
            "-o",
            "/tmp/BOOTX64.EFI",
            "-c",
            "/tmp/edgemig-efi.cfg",
        ])
        .args(["-p", "/boot/grub", "part_gpt", "ext2", "search_fs_uuid"])
        .run()?;
    let esp = dev.partition(super::disk::ESP_PARTITION);
    let mtools = |program: &str| {
        Cmd::new(program)
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-i")
            .arg(&esp)
    };
    mtools("mmd").args(["::/EFI", "::/EFI/BOOT"]).run()?;
    mtools("mcopy")
        .arg(root.join("tmp/BOOTX64.EFI"))
        .arg("::/EFI/BOOT/BOOTX64.EFI")
        .run()?;

    chroot.cmd("update-grub").run()?;
    let cfg_path = root.join("boot/grub/grub.cfg");
    let cfg = fs::read_to_string(&cfg_path).map_err(DistroError::io(&cfg_path))?;
    let want = format!("root=UUID={} ", ids.root_fs);
    if !cfg.contains(&want) || !cfg.contains(KERNEL_CMDLINE) {
        return Err(DistroError::Check(format!(
            "{} lacks \"{want}{KERNEL_CMDLINE}\"",
            cfg_path.display()
        )));
    }
    Ok(())
}

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
    fn grub_defaults_boot_at_once_with_the_command_line() {
        let d = grub_defaults();
        assert!(d.contains("GRUB_TIMEOUT=0\n"));
        assert!(d.contains(&format!("GRUB_CMDLINE_LINUX=\"{KERNEL_CMDLINE}\"")));
        assert!(KERNEL_CMDLINE.contains("console=ttyS0") && KERNEL_CMDLINE.contains("quiet"));
    }
}
