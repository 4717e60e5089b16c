//! The credentials directory QEMU's `tls-creds-x509` object reads.
//!
//! QEMU wants fixed file names in one directory: `ca-cert.pem`,
//! `server-cert.pem`, `server-key.pem`, `client-cert.pem`, `client-key.pem`.
//! The site certificate (serverAuth + clientAuth) serves as both.

use std::path::Path;

use crate::cert::SiteFiles;
use crate::files::{self, FileError, PRIVATE, PUBLIC};

/// Names of the files of a QEMU credentials directory.
pub const QEMU_CA_CERT: &str = "ca-cert.pem";
pub const QEMU_SERVER_CERT: &str = "server-cert.pem";
pub const QEMU_SERVER_KEY: &str = "server-key.pem";
pub const QEMU_CLIENT_CERT: &str = "client-cert.pem";
pub const QEMU_CLIENT_KEY: &str = "client-key.pem";

/// Writing the QEMU credentials directory failed.
#[derive(Debug, thiserror::Error)]
#[error("Cannot write the QEMU TLS credentials")]
pub struct QemuCredsError(#[from] FileError);

/// Writes the QEMU credentials of `site` into `dir` (created if missing);
/// keys are mode 0600. Pass `dir` as the `dir` property of
/// `tls-creds-x509` (with `verify-peer=on`).
pub fn write_qemu_creds(site: &SiteFiles, dir: &Path) -> Result<(), QemuCredsError> {
    files::create_dir(dir)?;
    files::copy(&site.ca, &dir.join(QEMU_CA_CERT), PUBLIC)?;
    files::copy(&site.cert, &dir.join(QEMU_SERVER_CERT), PUBLIC)?;
    files::copy(&site.key, &dir.join(QEMU_SERVER_KEY), PRIVATE)?;
    files::copy(&site.cert, &dir.join(QEMU_CLIENT_CERT), PUBLIC)?;
    files::copy(&site.key, &dir.join(QEMU_CLIENT_KEY), PRIVATE)?;
    Ok(())
}
