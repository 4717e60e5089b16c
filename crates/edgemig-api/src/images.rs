//! Images: read-only disk images a site keeps in a cache addressed by the
//! SHA-256 digest of their content. A VM boots from one (its root disk is
//! a qcow2 overlay on it) or its data disk is an overlay on one; a
//! migration then sends only the overlay (`sync: top`) when the destination
//! holds the same image. `image push` copies an image to another site ahead
//! of its VMs.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How a VM booting from an image starts: the firmware that runs the
/// image's own bootloader.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Firmware {
    /// SeaBIOS (QEMU's default BIOS): MBR or GPT with a BIOS boot partition.
    #[default]
    Bios,
    /// OVMF (UEFI); every VM gets its own copy of the variable store, which
    /// migrates with it.
    Uefi,
}

impl Firmware {
    /// `bios` or `uefi`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bios => "bios",
            Self::Uefi => "uefi",
        }
    }
}

impl fmt::Display for Firmware {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A firmware name other than `bios` or `uefi`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Unknown firmware {0:?}: use bios or uefi")]
pub struct UnknownFirmware(pub String);

impl FromStr for Firmware {
    type Err = UnknownFirmware;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "bios" => Ok(Self::Bios),
            "uefi" => Ok(Self::Uefi),
            other => Err(UnknownFirmware(other.to_string())),
        }
    }
}

/// Body of `POST /v1/images`: import a file into the site's cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageImport {
    /// Path of the image file on the agent's host (raw or qcow2). The file
    /// is copied; the original stays untouched.
    pub path: String,
    /// Human name for the image (defaults to the file name): 1–64 of
    /// `[A-Za-z0-9._-]`. Names are labels; the digest identifies the image.
    #[serde(default)]
    pub name: Option<String>,
    /// Firmware VMs booting from it use (default `bios`).
    #[serde(default)]
    pub firmware: Option<Firmware>,
}

/// Body of `POST /v1/images/{image}/push`: copy a cached image to another
/// site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImagePush {
    /// Site to copy the image to (one of this site's peers).
    pub to: String,
}

/// Answer to [`ImagePush`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImagePushReport {
    /// The image.
    pub digest: String,
    /// Where it went.
    pub to: String,
    /// The destination held it already: nothing was sent.
    pub already_present: bool,
    /// The furthest byte of the file a (re)started attempt of this push
    /// began at: what an earlier, cut push or attempt had already moved
    /// (0 when everything was sent in one go).
    pub resumed_from: u64,
    /// Bytes of the file (what the destination now holds).
    pub file_bytes: u64,
    /// Compressed bytes sent over the wire.
    pub wire_bytes: u64,
    /// Attempts made (a cut connection is retried, resuming).
    pub attempts: u32,
    /// Time the push took, in ms.
    pub total_ms: u64,
}

/// One image in a site's cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// `sha256:` followed by 64 hex digits of the file's content.
    pub digest: String,
    /// Human name.
    pub name: String,
    /// Disk format as QEMU names it (`raw` or `qcow2`).
    pub format: String,
    /// Size of the disk the guest sees, in bytes.
    pub virtual_bytes: u64,
    /// Bytes the cached file takes on the host.
    pub file_bytes: u64,
    /// Firmware of VMs booting from it.
    #[serde(default)]
    pub firmware: Firmware,
    /// VMs at this site whose root or data disk is an overlay on it.
    pub used_by: Vec<String>,
}

/// Prefix of every digest.
pub const DIGEST_PREFIX: &str = "sha256:";

/// Whether `s` is a well-formed digest (`sha256:` + 64 lowercase hex digits).
pub fn is_digest(s: &str) -> bool {
    s.strip_prefix(DIGEST_PREFIX).is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn firmware_names_round_trip() {
        for f in [Firmware::Bios, Firmware::Uefi] {
            assert_eq!(f.as_str().parse::<Firmware>().unwrap(), f);
            assert_eq!(serde_json::to_value(f).unwrap(), f.as_str());
        }
        assert_eq!(
            "efi".parse::<Firmware>().unwrap_err().to_string(),
            "Unknown firmware \"efi\": use bios or uefi"
        );
    }

    #[test]
    fn digests_are_checked_strictly() {
        let ok = format!("sha256:{}", "ab".repeat(32));
        assert!(is_digest(&ok));
        assert!(!is_digest(&ok.to_uppercase()));
        assert!(!is_digest(&ok[..ok.len() - 1]));
        assert!(!is_digest(&format!("md5:{}", "ab".repeat(32))));
        assert!(!is_digest(&format!("sha256:{}", "zz".repeat(32))));
    }
}
