//! One call that gives a whole testbed its PKI: a CA and a cert per site.
//!
//! Safe to call again: an existing CA is kept, and an existing site
//! certificate is kept while it was issued by that CA, names exactly the
//! requested site and addresses and has more than a day left.

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::cert::{self, CaFiles, CertError, SiteFiles, create_ca, create_site_cert};

/// Common name of the CA [`create_testbed_pki`] creates.
pub const TESTBED_CA_NAME: &str = "edgemig testbed CA";
/// Site certificates expiring sooner than this are renewed.
const RENEW_BEFORE: Duration = Duration::from_secs(86_400);

/// Creates (or keeps) the CA in `dir` and a certificate for each site in
/// `dir/<site>/`, with DNS SAN = site name and the given IP SANs.
pub fn create_testbed_pki(
    dir: &Path,
    sites: &[(String, Vec<IpAddr>)],
) -> Result<Vec<SiteFiles>, CertError> {
    for (site, _) in sites {
        cert::check_site_name(site)?;
    }
    let ca = CaFiles::in_dir(dir);
    if !(ca.cert.is_file() && ca.key.is_file()) {
        create_ca(dir, TESTBED_CA_NAME)?;
    }
    sites
        .iter()
        .map(|(site, ips)| {
            let out_dir = dir.join(site);
            let existing = SiteFiles::in_dir(&out_dir);
            if still_good(&ca, &existing, site, ips) {
                Ok(existing)
            } else {
                create_site_cert(dir, &out_dir, site, ips)
            }
        })
        .collect()
}

fn still_good(ca: &CaFiles, site_files: &SiteFiles, site: &str, ips: &[IpAddr]) -> bool {
    if !site_files.key.is_file() {
        return false;
    }
    let same_ca = match (std::fs::read(&ca.cert), std::fs::read(&site_files.ca)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    let Ok(info) = cert::read_cert_info(&site_files.cert) else {
        return false;
    };
    let Ok(ca_info) = cert::read_cert_info(&ca.cert) else {
        return false;
    };
    let renew_at = SystemTime::now() + RENEW_BEFORE;
    let renew_at = renew_at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(i64::MAX, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    same_ca
        && info.issuer == ca_info.subject
        && info.dns_names == [site]
        && info.ip_addrs == ips
        && info.not_after > renew_at
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotent_and_renews_on_change() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ip: IpAddr = "10.1.0.1".parse().expect("ip");
        let mut sites = vec![
            ("site-a".to_owned(), vec![ip]),
            ("site-b".to_owned(), vec![]),
        ];
        let first = create_testbed_pki(dir.path(), &sites).expect("first");
        assert_eq!(first[0], SiteFiles::in_dir(&dir.path().join("site-a")));
        let read = |p: &Path| std::fs::read(p).expect("read");
        let (ca, a_cert, b_cert) = (
            read(&dir.path().join("ca.pem")),
            read(&first[0].cert),
            read(&first[1].cert),
        );
        create_testbed_pki(dir.path(), &sites).expect("second");
        assert_eq!(read(&dir.path().join("ca.pem")), ca);
        assert_eq!(read(&first[0].cert), a_cert);
        assert_eq!(read(&first[1].cert), b_cert);

        sites[1].1.push("10.2.0.1".parse().expect("ip"));
        create_testbed_pki(dir.path(), &sites).expect("third");
        assert_eq!(read(&first[0].cert), a_cert);
        assert_ne!(read(&first[1].cert), b_cert);

        let err = create_testbed_pki(dir.path(), &[("bad name".to_owned(), vec![])]);
        assert!(matches!(err, Err(CertError::InvalidSiteName(_))));
    }
}
