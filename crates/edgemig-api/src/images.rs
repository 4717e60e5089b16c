//! Base images: read-only disk images a site keeps in a cache addressed by
//! the SHA-256 digest of their content. A VM's data disk can be a qcow2
//! overlay on one; a migration then sends only the overlay (`sync: top`)
//! when the destination holds the same base.

use serde::{Deserialize, Serialize};

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
}

/// One base image in a site's cache.
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
    /// VMs at this site whose data disk is an overlay on it.
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
    fn digests_are_checked_strictly() {
        let ok = format!("sha256:{}", "ab".repeat(32));
        assert!(is_digest(&ok));
        assert!(!is_digest(&ok.to_uppercase()));
        assert!(!is_digest(&ok[..ok.len() - 1]));
        assert!(!is_digest(&format!("md5:{}", "ab".repeat(32))));
        assert!(!is_digest(&format!("sha256:{}", "zz".repeat(32))));
    }
}
