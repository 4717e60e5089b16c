//! What a file offered as an image is: `qemu-img info` for the format,
//! size, backing file and encryption (taking QEMU's shared lock, so a file
//! that a running VM writes is refused as in use), and a look at the first
//! bytes of raw files, which `qemu-img` calls `raw` whatever they hold.

use std::io::Read;
use std::path::Path;

use super::ImageError;

/// What `qemu-img info` says about a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// `raw` or `qcow2`.
    pub format: String,
    /// Guest-visible size.
    pub virtual_bytes: u64,
    /// Whether it has a backing file.
    pub has_backing: bool,
    /// Whether its content is encrypted (qcow2 LUKS or AES).
    pub encrypted: bool,
}

/// How much of a raw file is read to tell what it holds.
const SNIFF_BYTES: usize = 64 << 10;

/// Runs `qemu-img info --output=json` on `path` and checks that it is a
/// self-contained, unencrypted raw or qcow2 disk image nobody writes now.
pub async fn inspect(path: &Path) -> Result<Probe, ImageError> {
    let fail = |source| ImageError::Inspect {
        path: path.to_path_buf(),
        source,
    };
    let out = tokio::process::Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(path)
        .output()
        .await
        .map_err(fail)?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if stderr.contains("lock") {
            return Err(ImageError::InUse(format!(
                "{} is in use by another process (a running VM?): stop it, or import a copy",
                path.display()
            )));
        }
        return Err(fail(std::io::Error::other(stderr)));
    }
    let info: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| fail(std::io::Error::other(e)))?;
    let probe = Probe {
        format: info["format"].as_str().unwrap_or_default().to_string(),
        virtual_bytes: info["virtual-size"].as_u64().unwrap_or(0),
        has_backing: info.get("backing-filename").is_some(),
        encrypted: info["encrypted"].as_bool().unwrap_or(false),
    };
    check(path, &probe)?;
    if probe.format == "raw" {
        let head = read_head(path).map_err(fail)?;
        if let Some(what) = not_a_disk(&head, probe.virtual_bytes) {
            return Err(ImageError::Invalid(format!(
                "{} is not a disk image: {what}",
                path.display()
            )));
        }
    }
    Ok(probe)
}

/// The refusals that follow from `qemu-img info` alone.
fn check(path: &Path, probe: &Probe) -> Result<(), ImageError> {
    if probe.format != "raw" && probe.format != "qcow2" {
        return Err(ImageError::Invalid(format!(
            "{} is a {:?} image: images must be raw or qcow2 (qemu-img convert -O qcow2)",
            path.display(),
            probe.format
        )));
    }
    if probe.has_backing {
        return Err(ImageError::Invalid(format!(
            "{} has a backing file: import a self-contained image (qemu-img convert)",
            path.display()
        )));
    }
    if probe.encrypted {
        return Err(ImageError::Invalid(format!(
            "{} is encrypted: edgemig cannot give QEMU its key; import a decrypted copy",
            path.display()
        )));
    }
    if probe.virtual_bytes == 0 {
        return Err(ImageError::Invalid(format!(
            "{} is empty: a disk image holds at least one sector",
            path.display()
        )));
    }
    Ok(())
}

fn read_head(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(SNIFF_BYTES);
    std::fs::File::open(path)?
        .take(SNIFF_BYTES as u64)
        .read_to_end(&mut head)?;
    Ok(head)
}

/// Why the first bytes of a raw file show it is no disk image, if they do:
/// sizes that are no whole number of sectors, archives, executables and
/// text. A file of zeros passes (a blank disk).
pub fn not_a_disk(head: &[u8], len: u64) -> Option<&'static str> {
    const MAGICS: &[(&[u8], &str)] = &[
        (b"\x7fELF", "it is an ELF executable"),
        (b"\x1f\x8b", "it is gzip-compressed (decompress it first)"),
        (b"\xfd7zXZ\x00", "it is xz-compressed (decompress it first)"),
        (
            b"\x28\xb5\x2f\xfd",
            "it is zstd-compressed (decompress it first)",
        ),
        (b"BZh", "it is bzip2-compressed (decompress it first)"),
        (b"PK\x03\x04", "it is a zip archive"),
        (b"%PDF", "it is a PDF document"),
    ];
    if !len.is_multiple_of(512) {
        return Some("its size is not a whole number of 512-byte sectors");
    }
    if let Some((_, what)) = MAGICS.iter().find(|(m, _)| head.starts_with(m)) {
        return Some(what);
    }
    if head.len() >= 262 && &head[257..262] == b"ustar" {
        return Some("it is a tar archive");
    }
    let text = !head.is_empty()
        && !head.contains(&0)
        && std::str::from_utf8(head).is_ok_and(|t| {
            t.chars()
                .all(|c| !c.is_control() || c.is_ascii_whitespace())
        });
    text.then_some("it holds text")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_and_partitioned_disks_pass() {
        assert_eq!(not_a_disk(&[0; 4096], 4096), None);
        let mut mbr = vec![0u8; 512];
        mbr[510] = 0x55;
        mbr[511] = 0xaa;
        assert_eq!(not_a_disk(&mbr, 1 << 20), None);
        // Random-looking binary content (a file system's metadata) passes.
        let bin: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 251) as u8).collect();
        assert_eq!(not_a_disk(&bin, 4096), None);
    }

    #[test]
    fn text_archives_and_odd_sizes_are_refused() {
        let text = b"hello, this is a README\nwith two lines\n".repeat(20);
        assert_eq!(not_a_disk(&text, 512), Some("it holds text"));
        assert_eq!(
            not_a_disk(b"\x7fELF\x02\x01", 512),
            Some("it is an ELF executable")
        );
        assert!(not_a_disk(b"\x1f\x8b\x08", 512).unwrap().contains("gzip"));
        assert!(
            not_a_disk(&[0; 100], 100)
                .unwrap()
                .contains("512-byte sectors")
        );
        let mut tar = vec![0u8; 512];
        tar[257..262].copy_from_slice(b"ustar");
        assert_eq!(not_a_disk(&tar, 512), Some("it is a tar archive"));
    }
}
