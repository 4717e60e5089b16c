//! The QEMU command line of a VM, built from its record and the site config
//! without I/O so it can be checked in tests.

use std::ffi::OsString;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use edgemig_guest_proto::PORT_NAME;

use crate::vm::{DiskRole, VmRecord};

/// Paths of a VM's files in its state directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmFiles {
    /// The VM's directory.
    pub dir: PathBuf,
}

impl VmFiles {
    /// Files of the VM in `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }
    /// QMP socket.
    pub fn qmp(&self) -> PathBuf {
        self.dir.join("qmp.sock")
    }
    /// Host end of the guest agent's virtio-serial port.
    pub fn guest_channel(&self) -> PathBuf {
        self.dir.join("guest.sock")
    }
    /// Serial console log.
    pub fn serial_log(&self) -> PathBuf {
        self.dir.join("serial.log")
    }
    /// QEMU's pid file (written by QEMU; tools and tests find it there).
    pub fn pidfile(&self) -> PathBuf {
        self.dir.join("qemu.pid")
    }
    /// QEMU's own log (`-D`).
    pub fn qemu_log(&self) -> PathBuf {
        self.dir.join("qemu.log")
    }
    /// What QEMU printed on stderr (why it refused to start).
    pub fn qemu_stderr(&self) -> PathBuf {
        self.dir.join("qemu.stderr")
    }
    /// Data disk image.
    pub fn data_disk(&self) -> PathBuf {
        self.disk(DiskRole::Data)
    }
    /// The image file of disk `role`.
    pub fn disk(&self, role: DiskRole) -> PathBuf {
        self.dir.join(role.file_name())
    }
    /// The VM's own UEFI variable store (a copy of the OVMF template).
    pub fn efi_vars(&self) -> PathBuf {
        self.dir.join("efivars.fd")
    }
}

/// What QEMU boots.
#[derive(Debug, Clone, Copy)]
pub enum BootMedia<'a> {
    /// The built-in guest: kernel and initramfs.
    Kernel {
        /// Guest kernel.
        kernel: &'a Path,
        /// Guest initramfs.
        initramfs: &'a Path,
    },
    /// The root disk, through SeaBIOS (`ovmf_code: None`) or OVMF.
    Disk {
        /// OVMF's code image for UEFI VMs (the variable store is the VM's
        /// own file, [`VmFiles::efi_vars`]).
        ovmf_code: Option<&'a Path>,
    },
}

/// Everything the command line depends on besides the record.
#[derive(Debug, Clone)]
pub struct VmLaunch<'a> {
    /// The VM.
    pub record: &'a VmRecord,
    /// Its files.
    pub files: &'a VmFiles,
    /// What it boots.
    pub boot: BootMedia<'a>,
    /// Accelerator (`tcg`, `kvm`).
    pub accel: &'a str,
    /// Prefix length of the site's VM subnet.
    pub prefix_len: u8,
    /// Gateway of the site's VM network.
    pub gateway: Ipv4Addr,
    /// Start as a migration destination (`-incoming defer`).
    pub incoming: bool,
}

/// QMP id of NIC `index` (used with `set_link`).
pub fn nic_id(index: u8) -> String {
    format!("nic{index}")
}

/// The arguments after the binary name. QEMU starts paused (`-S`) and
/// runs contained (`-sandbox`, see `spawn.rs`), its TAP devices handed over
/// as descriptors 3 and 4; the agent finishes set-up over QMP.
pub fn build_args(l: &VmLaunch<'_>) -> Vec<OsString> {
    let r = l.record;
    let f = l.files;
    let mut args: Vec<OsString> = Vec::new();
    let mut push = |s: String| args.push(OsString::from(s));
    push("-name".into());
    push(format!("{},process=edgemig-{}", r.name, r.name));
    for a in ["-nodefaults", "-no-user-config", "-display", "none", "-S"] {
        push(a.into());
    }
    push("-accel".into());
    push(l.accel.into());
    match l.boot {
        BootMedia::Disk {
            ovmf_code: Some(code),
        } => {
            push("-blockdev".into());
            push(format!(
                "node-name=fw-code,driver=file,filename={},read-only=on",
                code.display()
            ));
            push("-blockdev".into());
            push(format!(
                "node-name=fw-vars,driver=raw,file.driver=file,file.filename={}",
                f.efi_vars().display()
            ));
            push("-machine".into());
            push("q35,pflash0=fw-code,pflash1=fw-vars".into());
        }
        _ => {
            push("-machine".into());
            push("q35".into());
        }
    }
    push("-m".into());
    push(format!("{}M", r.memory_mib));
    push("-smp".into());
    push(r.vcpus.to_string());
    if let BootMedia::Kernel { kernel, initramfs } = l.boot {
        push("-kernel".into());
        push(kernel.display().to_string());
        push("-initrd".into());
        push(initramfs.display().to_string());
        push("-append".into());
        push(format!(
            "console=ttyS0 panic=-1 quiet edgemig.ip0={}/{} edgemig.gw={}",
            r.address, l.prefix_len, l.gateway
        ));
    }
    if l.incoming {
        push("-incoming".into());
        push("defer".into());
    }
    push("-pidfile".into());
    push(f.pidfile().display().to_string());
    push("-sandbox".into());
    push(super::spawn::SANDBOX.into());
    push("-serial".into());
    push(format!("file:{}", f.serial_log().display()));
    push("-D".into());
    push(f.qemu_log().display().to_string());
    push("-qmp".into());
    push(format!("unix:{},server=on,wait=off", f.qmp().display()));
    push("-device".into());
    push("virtio-serial-pci,id=vser0".into());
    push("-chardev".into());
    push(format!(
        "socket,id=guestch,path={},server=on,wait=off",
        f.guest_channel().display()
    ));
    push("-device".into());
    push(format!("virtserialport,chardev=guestch,name={PORT_NAME}"));
    for index in 0..2u8 {
        push("-netdev".into());
        push(format!(
            "tap,id=net{index},fd={},vhost=off",
            super::spawn::FIRST_TAP_FD + i32::from(index)
        ));
        push("-device".into());
        push(format!(
            "virtio-net-pci,netdev=net{index},id={},mac={}",
            nic_id(index),
            r.mac(index)
        ));
    }
    for disk in r.disks() {
        let role = disk.role;
        push("-blockdev".into());
        push(format!(
            "driver=qcow2,node-name={},file.driver=file,file.filename={}",
            role.node(),
            f.disk(role).display()
        ));
        push("-device".into());
        let boot = if role == DiskRole::Root {
            ",bootindex=0"
        } else {
            ""
        };
        push(format!(
            "virtio-blk-pci,drive={},id={}{boot}",
            role.node(),
            role.device_id()
        ));
    }
    args
}

#[cfg(test)]
mod tests {
    use edgemig_api::VmState;

    use super::*;

    fn record() -> VmRecord {
        VmRecord {
            name: "vm1".into(),
            id: 3,
            mac_seed: 3,
            memory_mib: 256,
            vcpus: 1,
            disk_mib: Some(64),
            base_digest: None,
            boot: crate::vm::Boot::Builtin,
            mptcp_apps: Default::default(),
            address: Ipv4Addr::new(10, 10, 0, 2),
            prefix_len: 24,
            gateway: None,
            active_nic: 0,
            next_address: None,
            follow: None,
            state: VmState::Stopped,
            pid: None,
        }
    }

    fn line(args: &[OsString]) -> Vec<String> {
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn command_line_has_two_nics_agent_port_and_no_user_netdev() {
        let record = record();
        let files = VmFiles::new("/s/vms/vm1".into());
        let args = build_args(&VmLaunch {
            record: &record,
            files: &files,
            boot: BootMedia::Kernel {
                kernel: Path::new("/img/vmlinuz"),
                initramfs: Path::new("/img/initramfs.cpio"),
            },
            accel: "tcg",
            prefix_len: 24,
            gateway: Ipv4Addr::new(10, 10, 0, 1),
            incoming: false,
        });
        let line = line(&args);
        let joined = line.join(" ");
        assert!(joined.contains("-accel tcg"));
        assert!(joined.contains("-m 256M"));
        assert!(joined.contains("edgemig.ip0=10.10.0.2/24 edgemig.gw=10.10.0.1"));
        assert!(joined.contains("id=nic0,mac=52:54:00:00:00:03"));
        assert!(joined.contains("id=nic1,mac=52:54:01:00:00:03"));
        assert!(joined.contains("tap,id=net1,fd=4,vhost=off"));
        assert!(joined.contains(
            "-sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"
        ));
        assert!(!joined.contains("-daemonize"), "spawn=deny forbids it");
        assert!(joined.contains(&format!("name={PORT_NAME}")));
        assert!(joined.contains("/s/vms/vm1/data.qcow2"));
        let netdevs: Vec<_> = line
            .windows(2)
            .filter(|w| w[0] == "-netdev")
            .map(|w| w[1].as_str())
            .collect();
        assert_eq!(netdevs.len(), 2);
        assert!(
            netdevs.iter().all(|n| n.starts_with("tap,")),
            "only TAP backends, never -netdev user: {netdevs:?}"
        );
    }

    #[test]
    fn a_uefi_disk_vm_boots_its_root_disk_through_ovmf() {
        let mut record = record();
        record.boot = crate::vm::Boot::Disk {
            firmware: edgemig_api::images::Firmware::Uefi,
            root_mib: 2048,
            image: Some("sha256:00".into()),
            origin: "sha256:00".into(),
        };
        let files = VmFiles::new("/s/vms/vm1".into());
        let args = build_args(&VmLaunch {
            record: &record,
            files: &files,
            boot: BootMedia::Disk {
                ovmf_code: Some(Path::new("/usr/share/OVMF/OVMF_CODE_4M.fd")),
            },
            accel: "tcg",
            prefix_len: 24,
            gateway: Ipv4Addr::new(10, 10, 0, 1),
            incoming: true,
        });
        let joined = line(&args).join(" ");
        assert!(!joined.contains("-kernel"), "{joined}");
        assert!(!joined.contains("edgemig.ip0"), "{joined}");
        assert!(joined.contains("-machine q35,pflash0=fw-code,pflash1=fw-vars"));
        assert!(joined.contains("filename=/usr/share/OVMF/OVMF_CODE_4M.fd,read-only=on"));
        assert!(joined.contains("file.filename=/s/vms/vm1/efivars.fd"));
        let root = joined.find("node-name=root0").expect("root disk");
        let data = joined.find("node-name=data0").expect("data disk");
        assert!(root < data, "the root disk comes first: {joined}");
        assert!(joined.contains("drive=root0,id=vroot0,bootindex=0"));
        assert!(joined.contains("-incoming defer"));
    }
}
