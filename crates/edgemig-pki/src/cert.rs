//! Creating the site CA and the per-site certificates, as PEM files.
//!
//! Layout: a CA directory holds `ca.pem` and `ca-key.pem`; a site directory
//! holds `cert.pem`, `key.pem` and a copy of the CA's `ca.pem`. Keys are
//! ECDSA P-256, private key files are mode 0600.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

use crate::der::{self, CertInfo};
use crate::files::{self, FileError, PRIVATE, PUBLIC};

/// File name of the CA certificate, in the CA and in every site directory.
pub const CA_CERT: &str = "ca.pem";
/// File name of the CA private key.
pub const CA_KEY: &str = "ca-key.pem";
/// File name of a site's certificate.
pub const SITE_CERT: &str = "cert.pem";
/// File name of a site's private key.
pub const SITE_KEY: &str = "key.pem";

/// Default lifetime of a site certificate.
pub const DEFAULT_SITE_DAYS: u32 = 365;
/// Lifetime of a CA certificate.
pub const CA_DAYS: u32 = 3650;
/// How far back `not_before` is set, to tolerate clocks slightly behind.
const CLOCK_SKEW: Duration = Duration::from_secs(300);

/// Everything that can go wrong creating certificates.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("Site name {0:?} is not a valid DNS name")]
    InvalidSiteName(String),
    #[error("Cannot generate a certificate")]
    Generate(#[source] rcgen::Error),
    #[error("Cannot parse the PEM file {}", path.display())]
    Pem {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("{} is not a certificate this crate can read", path.display())]
    UnreadableCert { path: PathBuf },
    #[error("The validity period ends before it starts")]
    EmptyValidity,
}

/// Paths of a CA's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaFiles {
    /// The CA certificate (`ca.pem`).
    pub cert: PathBuf,
    /// The CA private key (`ca-key.pem`).
    pub key: PathBuf,
}

impl CaFiles {
    /// The CA files inside `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            cert: dir.join(CA_CERT),
            key: dir.join(CA_KEY),
        }
    }
}

/// Paths of one site's TLS material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteFiles {
    /// The CA certificate every peer must chain to.
    pub ca: PathBuf,
    /// This site's certificate.
    pub cert: PathBuf,
    /// This site's private key.
    pub key: PathBuf,
}

impl SiteFiles {
    /// The site files inside `dir` (`ca.pem`, `cert.pem`, `key.pem`).
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            ca: dir.join(CA_CERT),
            cert: dir.join(SITE_CERT),
            key: dir.join(SITE_KEY),
        }
    }
}

/// When a certificate is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl Validity {
    /// From a few minutes ago (clock skew) to `days` days from now.
    pub fn days_from_now(days: u32) -> Self {
        let now = SystemTime::now();
        Self {
            not_before: now - CLOCK_SKEW,
            not_after: now + Duration::from_secs(u64::from(days) * 86_400),
        }
    }
}

impl Default for Validity {
    fn default() -> Self {
        Self::days_from_now(DEFAULT_SITE_DAYS)
    }
}

/// Creates a new CA named `name` in `dir` (valid for [`CA_DAYS`] days).
pub fn create_ca(dir: &Path, name: &str) -> Result<CaFiles, CertError> {
    create_ca_with(dir, name, Validity::days_from_now(CA_DAYS))
}

/// Creates a new CA named `name` in `dir`, valid during `validity`.
pub fn create_ca_with(dir: &Path, name: &str, validity: Validity) -> Result<CaFiles, CertError> {
    let mut params = ca_params(name);
    set_validity(&mut params, validity)?;
    let key = KeyPair::generate().map_err(CertError::Generate)?;
    let cert = params.self_signed(&key).map_err(CertError::Generate)?;

    files::create_dir(dir)?;
    let out = CaFiles::in_dir(dir);
    files::write(&out.key, key.serialize_pem().as_bytes(), PRIVATE)?;
    files::write(&out.cert, cert.pem().as_bytes(), PUBLIC)?;
    Ok(out)
}

/// Creates the certificate of `site`, signed by the CA in `ca_dir`, valid
/// for [`DEFAULT_SITE_DAYS`] days, in `out_dir`.
pub fn create_site_cert(
    ca_dir: &Path,
    out_dir: &Path,
    site: &str,
    ips: &[IpAddr],
) -> Result<SiteFiles, CertError> {
    create_site_cert_with(ca_dir, out_dir, site, ips, Validity::default())
}

/// Creates the certificate of `site`: DNS SAN `site` plus the IP SANs `ips`,
/// usable as TLS server and client, signed by the CA in `ca_dir`, written to
/// `out_dir` together with a copy of the CA certificate.
pub fn create_site_cert_with(
    ca_dir: &Path,
    out_dir: &Path,
    site: &str,
    ips: &[IpAddr],
    validity: Validity,
) -> Result<SiteFiles, CertError> {
    check_site_name(site)?;
    let ca = CaFiles::in_dir(ca_dir);
    let ca_info = read_cert_info(&ca.cert)?;
    let ca_name = ca_info
        .common_name
        .ok_or_else(|| CertError::UnreadableCert {
            path: ca.cert.clone(),
        })?;
    let ca_key_pem = files::read(&ca.key)?;
    let ca_key =
        KeyPair::from_pem(&String::from_utf8_lossy(&ca_key_pem)).map_err(CertError::Generate)?;
    let issuer = Issuer::new(ca_params(&ca_name), ca_key);

    let mut params = CertificateParams::default();
    params.distinguished_name = common_name(site);
    params.subject_alt_names = std::iter::once(
        site.to_owned()
            .try_into()
            .map(SanType::DnsName)
            .map_err(|_| CertError::InvalidSiteName(site.to_owned())),
    )
    .chain(ips.iter().map(|ip| Ok(SanType::IpAddress(*ip))))
    .collect::<Result<_, _>>()?;
    params.is_ca = IsCa::ExplicitNoCa;
    // QEMU (GnuTLS) insists on both bits when the extension is critical.
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, validity)?;

    let key = KeyPair::generate().map_err(CertError::Generate)?;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(CertError::Generate)?;
    // The issuer name is rebuilt from the CA's common name; make sure it
    // came out byte for byte as the CA's subject, or peers would not chain.
    let issued = der::parse_cert(cert.der()).ok_or_else(|| CertError::UnreadableCert {
        path: out_dir.join(SITE_CERT),
    })?;
    if issued.issuer != ca_info.subject {
        return Err(CertError::UnreadableCert { path: ca.cert });
    }

    files::create_dir(out_dir)?;
    let out = SiteFiles::in_dir(out_dir);
    files::write(&out.key, key.serialize_pem().as_bytes(), PRIVATE)?;
    files::write(&out.cert, cert.pem().as_bytes(), PUBLIC)?;
    files::copy(&ca.cert, &out.ca, PUBLIC)?;
    Ok(out)
}

/// A site name must be a DNS name: peers check it as the TLS server name.
pub(crate) fn check_site_name(site: &str) -> Result<(), CertError> {
    match ServerName::try_from(site) {
        Ok(ServerName::DnsName(_)) => Ok(()),
        _ => Err(CertError::InvalidSiteName(site.to_owned())),
    }
}

/// Reads the first certificate of a PEM file and parses the fields we use.
pub(crate) fn read_cert_info(path: &Path) -> Result<CertInfo, CertError> {
    let pem = files::read(path)?;
    let der = CertificateDer::from_pem_slice(&pem).map_err(|source| CertError::Pem {
        path: path.to_path_buf(),
        source,
    })?;
    der::parse_cert(&der).ok_or_else(|| CertError::UnreadableCert {
        path: path.to_path_buf(),
    })
}

fn common_name(name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn
}

/// The parameters of a CA; also used to rebuild the issuer when signing.
fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = common_name(name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

fn set_validity(params: &mut CertificateParams, validity: Validity) -> Result<(), CertError> {
    if validity.not_after <= validity.not_before {
        return Err(CertError::EmptyValidity);
    }
    params.not_before = validity.not_before.into();
    params.not_after = validity.not_after.into();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
    }

    #[test]
    fn site_cert_has_names_and_private_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = create_ca(&dir.path().join("ca"), "edgemig test CA").expect("ca");
        assert_eq!(mode(&ca.key), 0o600);
        let ips: Vec<IpAddr> = vec!["10.0.0.1".parse().expect("ip"), "::1".parse().expect("ip")];
        let site = create_site_cert(
            &dir.path().join("ca"),
            &dir.path().join("a"),
            "site-a",
            &ips,
        )
        .expect("site");
        assert_eq!(mode(&site.key), 0o600);
        assert_eq!(
            std::fs::read(&site.ca).expect("copy"),
            std::fs::read(&ca.cert).expect("ca")
        );
        let info = read_cert_info(&site.cert).expect("parse");
        assert_eq!(info.dns_names, vec!["site-a".to_owned()]);
        assert_eq!(info.ip_addrs, ips);
        assert_eq!(info.common_name.as_deref(), Some("site-a"));
        assert_eq!(info.issuer, read_cert_info(&ca.cert).expect("ca").subject);
        let in_a_year = SystemTime::now() + Duration::from_secs(364 * 86_400);
        let secs = in_a_year
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("after epoch")
            .as_secs();
        assert!(info.not_after > i64::try_from(secs).expect("fits"));
    }

    #[test]
    fn rejects_bad_site_names_and_empty_validity() {
        let dir = tempfile::tempdir().expect("tempdir");
        create_ca(dir.path(), "CA").expect("ca");
        let err = create_site_cert(dir.path(), &dir.path().join("x"), "10.0.0.1", &[])
            .expect_err("an IP is not a site name");
        assert!(matches!(err, CertError::InvalidSiteName(_)));
        let now = SystemTime::now();
        let empty = Validity {
            not_before: now,
            not_after: now,
        };
        let err = create_site_cert_with(dir.path(), &dir.path().join("x"), "site-x", &[], empty)
            .expect_err("empty validity");
        assert!(matches!(err, CertError::EmptyValidity));
    }
}
