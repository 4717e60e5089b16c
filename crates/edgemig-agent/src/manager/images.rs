//! Images at this site: import, list and remove through the API, and the
//! disk-space check a migration destination makes before accepting a VM's
//! disks.

use std::path::Path;

use edgemig_api::{ImageImport, ImageInfo};

use super::{Manager, ManagerError};
use crate::images::{CachedImage, ImageError};

/// Space kept free on the state file system beyond what a disk needs.
pub(crate) const SPACE_MARGIN: u64 = 64 << 20;

impl From<ImageError> for ManagerError {
    fn from(e: ImageError) -> Self {
        match e {
            ImageError::Invalid(m) => Self::Invalid(m),
            ImageError::NotFound(_) => Self::Missing(e.to_string()),
            ImageError::Ambiguous(_) => Self::Invalid(e.to_string()),
            ImageError::InUse(m) => Self::Conflict(m),
            ImageError::Inspect { path, source } => Self::Invalid(format!(
                "Cannot read {} as a disk image: {source}",
                path.display()
            )),
            ImageError::Io { what, source } => Self::Io { what, source },
        }
    }
}

impl Manager {
    pub(crate) fn image_info(&self, image: CachedImage) -> Result<ImageInfo, ManagerError> {
        let used_by = self
            .store
            .all()
            .map_err(ManagerError::Store)?
            .into_iter()
            .filter(|r| {
                r.disks()
                    .iter()
                    .any(|d| d.base.as_deref() == Some(image.meta.digest.as_str()))
            })
            .map(|r| r.name)
            .collect();
        Ok(ImageInfo {
            digest: image.meta.digest,
            name: image.meta.name,
            format: image.meta.format,
            virtual_bytes: image.meta.virtual_bytes,
            file_bytes: image.file_bytes,
            firmware: image.meta.firmware,
            used_by,
        })
    }

    /// The site's cached images.
    pub fn list_images(&self) -> Result<Vec<ImageInfo>, ManagerError> {
        self.images
            .list()
            .into_iter()
            .map(|i| self.image_info(i))
            .collect()
    }

    /// Imports a file into the cache (the same content twice is one image).
    pub async fn import_image(&self, import: ImageImport) -> Result<ImageInfo, ManagerError> {
        let path = Path::new(&import.path);
        if !path.is_absolute() {
            return Err(ManagerError::Invalid(format!(
                "Image path {:?} must be absolute (the agent resolves it, not the CLI)",
                import.path
            )));
        }
        let image = self
            .images
            .import(path, import.name, import.firmware.unwrap_or_default())
            .await?;
        self.image_info(image)
    }

    /// Removes a cached image no VM here uses.
    pub async fn remove_image(&self, image: &str) -> Result<(), ManagerError> {
        let _op = self.ops.lock().await;
        let cached = self.images.resolve(image)?;
        let info = self.image_info(cached.clone())?;
        if !info.used_by.is_empty() {
            return Err(ManagerError::Conflict(format!(
                "Image {} is used by VM(s) {}: delete them first",
                info.name,
                info.used_by.join(", ")
            )));
        }
        self.images.remove(&cached)?;
        tracing::info!(digest = %info.digest, "image removed");
        Ok(())
    }

    /// Refuses when the file system of the VM directories cannot take
    /// `needed` more bytes.
    pub(crate) fn check_disk_space(&self, vm: &str, needed: u64) -> Result<(), ManagerError> {
        let vms = self.config.state_dir.join("vms");
        let free = free_bytes(&vms).map_err(|source| ManagerError::Io {
            what: format!("Cannot read free space of {}", vms.display()),
            source,
        })?;
        if needed.saturating_add(SPACE_MARGIN) > free {
            return Err(ManagerError::Conflict(format!(
                "Site {} has no room for the disk of VM {vm:?}: it needs {} MiB, {} MiB are free",
                self.config.site,
                needed.div_ceil(1 << 20),
                free >> 20
            )));
        }
        Ok(())
    }
}

/// Bytes an unprivileged writer may still use on the file system of `path`.
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(std::io::Error::other)?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c_path` is a valid NUL-terminated string and `stat` points to
    // writable memory of the right size for statvfs to fill.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it initialised `stat`.
    let stat = unsafe { stat.assume_init() };
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_bytes_reads_the_file_system() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(free_bytes(tmp.path()).unwrap() > 0);
        assert!(free_bytes(&tmp.path().join("missing")).is_err());
    }
}
