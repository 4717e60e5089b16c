//! The site's cache of images, addressed by the SHA-256 digest of their
//! content: `<state>/images/<hex>.<format>` (read-only) plus `<hex>.json`
//! with the name, firmware and sizes. Two sites that imported (or pushed)
//! the same file hold it under the same digest, which is how a migration
//! learns it may mirror only a disk's top layer.

mod inspect;
pub mod receive;
pub mod stream;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use edgemig_api::images::{DIGEST_PREFIX, Firmware};
use serde::{Deserialize, Serialize};

pub use inspect::{Probe, inspect, not_a_disk};

/// Errors of the image cache.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Bad input (name, file, format).
    #[error("{0}")]
    Invalid(String),
    /// No image with this digest or name.
    #[error("No image {0:?} in this site's cache")]
    NotFound(String),
    /// A name matches several images.
    #[error("Image name {0:?} is ambiguous: use its digest")]
    Ambiguous(String),
    /// Another process holds the file open for writing.
    #[error("{0}")]
    InUse(String),
    /// `qemu-img` failed or is missing.
    #[error("Cannot inspect {path}")]
    Inspect {
        /// The image file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// File system work failed.
    #[error("{what}")]
    Io {
        /// What was attempted.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// What the cache keeps next to an image file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageMeta {
    /// `sha256:<hex>`.
    pub digest: String,
    /// Human name.
    pub name: String,
    /// `raw` or `qcow2`.
    pub format: String,
    /// Size the guest sees.
    pub virtual_bytes: u64,
    /// Firmware of VMs booting from it.
    #[serde(default)]
    pub firmware: Firmware,
}

/// A cached image: its metadata and file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedImage {
    /// Metadata.
    pub meta: ImageMeta,
    /// The read-only image file.
    pub path: PathBuf,
    /// Bytes the file takes on disk.
    pub file_bytes: u64,
}

/// The cache directory of one site.
#[derive(Debug, Clone)]
pub struct ImageCache {
    dir: PathBuf,
}

/// Whether `name` is a valid image name.
pub fn is_valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ImageError {
    let what = what.into();
    move |source| ImageError::Io { what, source }
}

/// Bytes a file takes on disk (allocated blocks, so sparse files count
/// what they hold).
pub fn allocated_bytes(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map_or(0, |m| m.blocks() * 512)
}

impl ImageCache {
    /// The cache in `dir` (created on first import).
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// Imports `source` (copied, hashed on the way), named `name` or after
    /// the file. Importing content the cache holds already returns it.
    pub async fn import(
        &self,
        source: &Path,
        name: Option<String>,
        firmware: Firmware,
    ) -> Result<CachedImage, ImageError> {
        let name = match name {
            Some(n) => n,
            None => source
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        if !is_valid_name(&name) {
            return Err(ImageError::Invalid(format!(
                "Invalid image name {name:?}: use 1-64 of [A-Za-z0-9._-]"
            )));
        }
        if !source.is_file() {
            return Err(ImageError::Invalid(format!(
                "{} is not a file on the agent's host",
                source.display()
            )));
        }
        let probe = inspect(source).await?;
        if probe.has_backing {
            return Err(ImageError::Invalid(format!(
                "{} has a backing file: import a self-contained image (qemu-img convert)",
                source.display()
            )));
        }
        std::fs::create_dir_all(&self.dir)
            .map_err(io(format!("Cannot create {}", self.dir.display())))?;
        let dir = self.dir.clone();
        let from = source.to_path_buf();
        let (tmp, hex) = tokio::task::spawn_blocking(move || copy_hashing(&from, &dir))
            .await
            .map_err(|e| ImageError::Io {
                what: "Image copy task failed".into(),
                source: std::io::Error::other(e.to_string()),
            })??;
        let digest = format!("{DIGEST_PREFIX}{hex}");
        if let Some(existing) = self.get(&digest) {
            let _ = std::fs::remove_file(&tmp);
            return Ok(existing);
        }
        let meta = ImageMeta {
            digest,
            name,
            format: probe.format,
            virtual_bytes: probe.virtual_bytes,
            firmware,
        };
        let image = self.admit(&tmp, &meta)?;
        tracing::info!(digest = %meta.digest, name = %meta.name, "image imported");
        Ok(image)
    }

    /// Moves the complete, verified file `tmp` into the cache as `meta`
    /// (file first, then its metadata: an image without metadata is not in
    /// the cache).
    fn admit(&self, tmp: &Path, meta: &ImageMeta) -> Result<CachedImage, ImageError> {
        let hex = meta
            .digest
            .strip_prefix(DIGEST_PREFIX)
            .unwrap_or_default()
            .to_string();
        let path = self.dir.join(format!("{hex}.{}", meta.format));
        set_read_only(tmp)?;
        std::fs::rename(tmp, &path).map_err(io(format!("Cannot store {}", path.display())))?;
        let json = serde_json::to_vec_pretty(meta).map_err(|e| ImageError::Io {
            what: "Cannot encode image metadata".into(),
            source: std::io::Error::other(e),
        })?;
        let meta_path = self.dir.join(format!("{hex}.json"));
        let meta_tmp = self.dir.join(format!(".{hex}.json.tmp"));
        std::fs::write(&meta_tmp, json)
            .and_then(|()| std::fs::rename(&meta_tmp, &meta_path))
            .map_err(io(format!("Cannot write {}", meta_path.display())))?;
        self.get(&meta.digest)
            .ok_or_else(|| ImageError::NotFound(meta.digest.clone()))
    }

    /// The cache's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every cached image, by name.
    pub fn list(&self) -> Vec<CachedImage> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out: Vec<CachedImage> = entries
            .flatten()
            .filter_map(|e| {
                let path = e.path();
                (path.extension()? == "json" && !e.file_name().to_string_lossy().starts_with('.'))
                    .then_some(())?;
                self.load(&path)
            })
            .collect();
        out.sort_by(|a, b| {
            a.meta
                .name
                .cmp(&b.meta.name)
                .then(a.meta.digest.cmp(&b.meta.digest))
        });
        out
    }

    /// The image with this digest, if cached.
    pub fn get(&self, digest: &str) -> Option<CachedImage> {
        if !edgemig_api::images::is_digest(digest) {
            return None;
        }
        let hex = digest.strip_prefix(DIGEST_PREFIX)?;
        self.load(&self.dir.join(format!("{hex}.json")))
    }

    /// The image a digest or a name names.
    pub fn resolve(&self, image: &str) -> Result<CachedImage, ImageError> {
        if edgemig_api::images::is_digest(image) {
            return self
                .get(image)
                .ok_or_else(|| ImageError::NotFound(image.to_string()));
        }
        let mut matching = self.list().into_iter().filter(|i| i.meta.name == image);
        match (matching.next(), matching.next()) {
            (Some(one), None) => Ok(one),
            (Some(_), Some(_)) => Err(ImageError::Ambiguous(image.to_string())),
            (None, _) => Err(ImageError::NotFound(image.to_string())),
        }
    }

    /// Removes an image from the cache.
    pub fn remove(&self, image: &CachedImage) -> Result<(), ImageError> {
        let hex = image
            .meta
            .digest
            .strip_prefix(DIGEST_PREFIX)
            .unwrap_or_default();
        let meta = self.dir.join(format!("{hex}.json"));
        std::fs::remove_file(&meta).map_err(io(format!("Cannot remove {}", meta.display())))?;
        std::fs::remove_file(&image.path)
            .map_err(io(format!("Cannot remove {}", image.path.display())))
    }

    fn load(&self, meta_path: &Path) -> Option<CachedImage> {
        let meta: ImageMeta = serde_json::from_slice(&std::fs::read(meta_path).ok()?).ok()?;
        let hex = meta.digest.strip_prefix(DIGEST_PREFIX)?;
        let path = self.dir.join(format!("{hex}.{}", meta.format));
        path.is_file().then(|| CachedImage {
            file_bytes: allocated_bytes(&path),
            meta,
            path,
        })
    }
}

fn set_read_only(path: &Path) -> Result<(), ImageError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o444))
        .map_err(io(format!("Cannot make {} read-only", path.display())))
}

/// Copies `from` into a temporary file in `dir`, hashing it; returns the
/// temporary path and the hex digest.
fn copy_hashing(from: &Path, dir: &Path) -> Result<(PathBuf, String), ImageError> {
    let tmp = dir.join(format!(".import-{}-{}", std::process::id(), unique()));
    let copy = || -> std::io::Result<String> {
        let mut input = std::fs::File::open(from)?;
        let mut output = std::fs::File::create(&tmp)?;
        let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = input.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
            // Keep holes: an all-zero block is skipped, not written.
            if buf[..n].iter().all(|b| *b == 0) {
                use std::io::Seek;
                output.seek(std::io::SeekFrom::Current(i64::try_from(n).unwrap_or(0)))?;
            } else {
                output.write_all(&buf[..n])?;
            }
        }
        let len = input.metadata()?.len();
        output.set_len(len)?;
        output.sync_all()?;
        Ok(hash
            .finish()
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect())
    };
    match copy() {
        Ok(hex) => Ok((tmp, hex)),
        Err(source) => {
            let _ = std::fs::remove_file(&tmp);
            Err(ImageError::Io {
                what: format!("Cannot copy {} into the image cache", from.display()),
                source,
            })
        }
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, bytes: &[u8]) {
        std::fs::write(path, bytes).unwrap();
    }

    #[tokio::test]
    async fn import_is_content_addressed_and_idempotent() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = ImageCache::new(tmp.path().join("cache"));
        let a = tmp.path().join("a.raw");
        let mut content = vec![0u8; 3 << 20];
        content[1 << 20] = 7;
        write(&a, &content);
        let first = cache
            .import(&a, Some("base".into()), Firmware::Bios)
            .await
            .unwrap();
        assert_eq!(first.meta.format, "raw");
        assert_eq!(first.meta.virtual_bytes, 3 << 20);
        assert!(edgemig_api::images::is_digest(&first.meta.digest));
        assert_eq!(
            std::fs::read(&first.path).unwrap(),
            content,
            "the copy keeps the bytes"
        );
        let expected: String = ring::digest::digest(&ring::digest::SHA256, &content)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(first.meta.digest, format!("sha256:{expected}"));
        // The same content under another file name is the same image.
        let b = tmp.path().join("b.raw");
        write(&b, &content);
        let again = cache.import(&b, None, Firmware::Bios).await.unwrap();
        assert_eq!(again.meta.digest, first.meta.digest);
        assert_eq!(cache.list().len(), 1);
        assert_eq!(
            cache.resolve("base").unwrap().meta.digest,
            first.meta.digest
        );
        assert_eq!(cache.resolve(&first.meta.digest).unwrap().path, first.path);
        // Different content, same name: the name becomes ambiguous.
        content[0] = 1;
        write(&b, &content);
        cache
            .import(&b, Some("base".into()), Firmware::Uefi)
            .await
            .unwrap();
        assert!(matches!(
            cache.resolve("base"),
            Err(ImageError::Ambiguous(_))
        ));
        cache.remove(&first).unwrap();
        assert!(cache.get(&first.meta.digest).is_none());
        assert!(!first.path.exists());
    }

    #[tokio::test]
    async fn bad_input_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = ImageCache::new(tmp.path().join("cache"));
        let missing = cache
            .import(&tmp.path().join("nope"), Some("x".into()), Firmware::Bios)
            .await;
        assert!(
            matches!(missing, Err(ImageError::Invalid(_))),
            "{missing:?}"
        );
        let f = tmp.path().join("f.raw");
        write(&f, &[1; 4096]);
        let bad_name = cache.import(&f, Some("a/b".into()), Firmware::Bios).await;
        assert!(matches!(bad_name, Err(ImageError::Invalid(_))));
        // An overlay (backing file) is not self-contained.
        let overlay = tmp.path().join("o.qcow2");
        let status = std::process::Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
            .arg(&f)
            .arg(&overlay)
            .status()
            .unwrap();
        assert!(status.success());
        let layered = cache
            .import(&overlay, Some("o".into()), Firmware::Bios)
            .await;
        assert!(
            matches!(layered, Err(ImageError::Invalid(_))),
            "{layered:?}"
        );
        // Text is not a disk image, whatever qemu-img calls it.
        let text = tmp.path().join("notes.txt");
        write(&text, &b"0123456789abcdef\n".repeat(64));
        let refused = cache.import(&text, None, Firmware::Bios).await;
        let Err(ImageError::Invalid(message)) = &refused else {
            panic!("{refused:?}");
        };
        assert!(message.contains("not a disk image"), "{message}");
        // An encrypted image needs a key edgemig does not have.
        let secret = tmp.path().join("key");
        write(&secret, b"s3cret");
        let encrypted = tmp.path().join("e.qcow2");
        let status = std::process::Command::new("qemu-img")
            .arg("create")
            .arg("-q")
            .arg("--object")
            .arg(format!("secret,id=k,file={}", secret.display()))
            .args([
                "-f",
                "qcow2",
                "-o",
                "encrypt.format=luks,encrypt.key-secret=k",
            ])
            .arg(&encrypted)
            .arg("1M")
            .status()
            .unwrap();
        assert!(status.success());
        let refused = cache.import(&encrypted, None, Firmware::Bios).await;
        let Err(ImageError::Invalid(message)) = &refused else {
            panic!("{refused:?}");
        };
        assert!(message.contains("encrypted"), "{message}");
        assert!(matches!(
            cache.resolve("nothing"),
            Err(ImageError::NotFound(_))
        ));
        assert!(cache.list().is_empty());
        let leftovers: Vec<_> = std::fs::read_dir(tmp.path().join("cache"))
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(leftovers.is_empty(), "nothing half-imported: {leftovers:?}");
    }
}
