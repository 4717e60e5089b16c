//! The disk layout: GPT with a BIOS boot partition (GRUB i386-pc's core
//! image), an EFI system partition (FAT32, GRUB x86_64-efi at the removable
//! path) and an ext4 root file system over the rest; so one disk boots
//! under SeaBIOS and under OVMF.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use super::cmd::Cmd;
use super::error::DistroError;

/// Bytes per sector of the image.
pub const SECTOR: u64 = 512;

/// Partition 1: BIOS boot, 1 MiB at 1 MiB.
pub const BIOS_BOOT_START: u64 = 1 << 20;
/// Size of the BIOS boot partition.
pub const BIOS_BOOT_BYTES: u64 = 1 << 20;
/// Partition 2: EFI system partition, at 2 MiB.
pub const ESP_START: u64 = 2 << 20;
/// Size of the EFI system partition (126 MiB: FAT32 with 512-byte clusters).
pub const ESP_BYTES: u64 = 126 << 20;
/// Partition 3: the root file system, from 128 MiB to the end.
pub const ROOT_START: u64 = 128 << 20;

/// Partition numbers.
pub const BIOS_BOOT_PARTITION: u32 = 1;
/// The EFI system partition.
pub const ESP_PARTITION: u32 = 2;
/// The root file system.
pub const ROOT_PARTITION: u32 = 3;

/// GPT type of a BIOS boot partition.
const TYPE_BIOS_BOOT: &str = "21686148-6449-6E6F-744E-656564454649";
/// GPT type of an EFI system partition.
const TYPE_ESP: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
/// GPT type of an x86-64 root partition (Discoverable Partitions Spec).
const TYPE_ROOT_X86_64: &str = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709";

// The partitions follow each other, MiB-aligned, and fit the smallest disk.
const _: () = assert!(
    BIOS_BOOT_START.is_multiple_of(1 << 20)
        && BIOS_BOOT_START + BIOS_BOOT_BYTES == ESP_START
        && ESP_START + ESP_BYTES == ROOT_START
        && ROOT_START < super::spec::MIN_SIZE_BYTES
);

/// Identifiers chosen for one disk (fresh for every build).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DiskIds {
    /// GPT disk GUID.
    pub disk: String,
    /// PARTUUID of the BIOS boot partition.
    pub bios_part: String,
    /// PARTUUID of the EFI system partition.
    pub esp_part: String,
    /// PARTUUID of the root partition.
    pub root_part: String,
    /// UUID of the ext4 root file system.
    pub root_fs: String,
    /// Volume id of the FAT file system (8 hex digits).
    pub esp_fs: String,
}

impl DiskIds {
    /// Random identifiers.
    pub(crate) fn random() -> Result<DiskIds, DistroError> {
        let esp = random_bytes::<4>()?;
        Ok(DiskIds {
            disk: uuid_v4(random_bytes()?),
            bios_part: uuid_v4(random_bytes()?),
            esp_part: uuid_v4(random_bytes()?),
            root_part: uuid_v4(random_bytes()?),
            root_fs: uuid_v4(random_bytes()?),
            esp_fs: esp.iter().map(|b| format!("{b:02X}")).collect(),
        })
    }

    /// The FAT volume id as `fstab` and `blkid` write it: `ABCD-1234`.
    pub(crate) fn esp_fs_uuid(&self) -> String {
        format!("{}-{}", &self.esp_fs[..4], &self.esp_fs[4..])
    }
}

fn random_bytes<const N: usize>() -> Result<[u8; N], DistroError> {
    let mut buf = [0u8; N];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(DistroError::io("/dev/urandom"))?;
    Ok(buf)
}

/// An RFC 4122 version 4 UUID from 16 random bytes.
fn uuid_v4(mut b: [u8; 16]) -> String {
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: Vec<String> = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        h[..4].concat(),
        h[4..6].concat(),
        h[6..8].concat(),
        h[8..10].concat(),
        h[10..].concat()
    )
}

/// The `sfdisk` script of the layout.
pub(crate) fn sfdisk_script(ids: &DiskIds) -> String {
    let s = |bytes: u64| bytes / SECTOR;
    format!(
        "label: gpt\nlabel-id: {}\n\
         start={}, size={}, type={TYPE_BIOS_BOOT}, uuid={}, name=\"bios-boot\"\n\
         start={}, size={}, type={TYPE_ESP}, uuid={}, name=\"esp\"\n\
         start={}, type={TYPE_ROOT_X86_64}, uuid={}, name=\"root\"\n",
        ids.disk,
        s(BIOS_BOOT_START),
        s(BIOS_BOOT_BYTES),
        ids.bios_part,
        s(ESP_START),
        s(ESP_BYTES),
        ids.esp_part,
        s(ROOT_START),
        ids.root_part,
    )
}

/// Creates a sparse raw disk of `size` bytes at `path` and partitions it.
pub(crate) fn create(path: &Path, size: u64, ids: &DiskIds) -> Result<(), DistroError> {
    File::create(path)
        .and_then(|f| f.set_len(size))
        .map_err(DistroError::io(path))?;
    Cmd::new("sfdisk")
        .args(["--quiet", "--no-reread", "--no-tell-kernel"])
        .arg(path)
        .stdin(sfdisk_script(ids))
        .run()
        .map(drop)
}

/// Makes the file systems: FAT32 on the ESP, ext4 on the root partition
/// (inode tables and journal written now, so the guest does not zero them
/// in the background on first boot).
pub(crate) fn format(esp: &Path, root: &Path, ids: &DiskIds) -> Result<(), DistroError> {
    Cmd::new("mkfs.vfat")
        .args(["-F", "32", "-n", "EFI", "-i", &ids.esp_fs])
        .arg(esp)
        .run()?;
    Cmd::new("mkfs.ext4")
        .args(["-q", "-L", "root", "-U", &ids.root_fs])
        .args(["-E", "lazy_itable_init=0,lazy_journal_init=0"])
        .arg(root)
        .run()
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_version_4() {
        let u = uuid_v4([0xff; 16]);
        assert_eq!(u, "ffffffff-ffff-4fff-bfff-ffffffffffff");
        let ids = DiskIds::random().unwrap();
        assert_ne!(ids.root_fs, ids.root_part);
        assert_eq!(ids.esp_fs.len(), 8);
        assert_eq!(ids.esp_fs_uuid().len(), 9);
    }

    #[test]
    fn sfdisk_lays_out_three_partitions() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("disk.raw");
        let ids = DiskIds::random().unwrap();
        create(&raw, 1 << 30, &ids).unwrap();
        let json = Cmd::new("sfdisk").arg("--json").arg(&raw).run().unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let parts = v["partitiontable"]["partitions"].as_array().unwrap();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0]["start"], BIOS_BOOT_START / SECTOR);
        assert_eq!(parts[0]["type"], TYPE_BIOS_BOOT);
        assert_eq!(parts[1]["type"], TYPE_ESP);
        assert_eq!(parts[2]["start"], ROOT_START / SECTOR);
        assert_eq!(
            parts[2]["uuid"].as_str().unwrap().to_lowercase(),
            ids.root_part
        );
        assert_eq!(std::fs::metadata(&raw).unwrap().len(), 1 << 30);
    }
}
