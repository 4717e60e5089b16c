//! Just enough DER reading to pull names and dates out of X.509 certificates.
//!
//! rustls already verifies the chains; this module only reads fields of
//! certificates that were verified (or that this crate wrote itself), so it
//! answers `None` on anything it does not understand instead of erroring.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const TAG_SEQUENCE: u8 = 0x30;
const TAG_SET: u8 = 0x31;
const TAG_OID: u8 = 0x06;
const TAG_BOOLEAN: u8 = 0x01;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_UTC_TIME: u8 = 0x17;
const TAG_GENERALIZED_TIME: u8 = 0x18;
const TAG_VERSION: u8 = 0xa0;
const TAG_EXTENSIONS: u8 = 0xa3;
const TAG_SAN_DNS: u8 = 0x82;
const TAG_SAN_IP: u8 = 0x87;
/// 2.5.4.3, commonName.
const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
/// 2.5.29.17, subjectAltName.
const OID_SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];

/// The fields of a certificate this crate cares about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CertInfo {
    /// Content octets of the issuer Name.
    pub issuer: Vec<u8>,
    /// Content octets of the subject Name.
    pub subject: Vec<u8>,
    /// First commonName of the subject, if any.
    pub common_name: Option<String>,
    /// DNS names of the subjectAltName extension, in order.
    pub dns_names: Vec<String>,
    /// IP addresses of the subjectAltName extension, in order.
    pub ip_addrs: Vec<IpAddr>,
    /// End of validity in seconds since the Unix epoch.
    pub not_after: i64,
}

/// Splits one TLV off the front of `input`: (tag, content, rest).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&len0, rest) = rest.split_first()?;
    let (len, rest) = if len0 < 0x80 {
        (usize::from(len0), rest)
    } else {
        let n = usize::from(len0 & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (len_bytes, rest) = rest.split_at(n);
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, rest)
    };
    if rest.len() < len {
        return None;
    }
    let (content, rest) = rest.split_at(len);
    Some((tag, content, rest))
}

/// Like [`tlv`] but insists on `tag`.
fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (t, content, rest) = tlv(input)?;
    (t == tag).then_some((content, rest))
}

/// Parses the fields of a DER encoded certificate.
pub(crate) fn parse_cert(der: &[u8]) -> Option<CertInfo> {
    let (cert, _) = expect(der, TAG_SEQUENCE)?;
    let (tbs, _) = expect(cert, TAG_SEQUENCE)?;
    let mut rest = tbs;
    if let Some((TAG_VERSION, _, after)) = tlv(rest) {
        rest = after;
    }
    let (_, _serial, rest) = tlv(rest)?;
    let (_sig_alg, rest) = expect(rest, TAG_SEQUENCE)?;
    let (issuer, rest) = expect(rest, TAG_SEQUENCE)?;
    let (validity, rest) = expect(rest, TAG_SEQUENCE)?;
    let (subject, rest) = expect(rest, TAG_SEQUENCE)?;
    let (_spki, mut rest) = expect(rest, TAG_SEQUENCE)?;

    let (_, _, after) = tlv(validity)?;
    let (time_tag, not_after, _) = tlv(after)?;
    let not_after = parse_time(time_tag, not_after)?;

    let mut info = CertInfo {
        issuer: issuer.to_vec(),
        subject: subject.to_vec(),
        common_name: common_name(subject),
        dns_names: Vec::new(),
        ip_addrs: Vec::new(),
        not_after,
    };
    while let Some((tag, content, after)) = tlv(rest) {
        rest = after;
        if tag == TAG_EXTENSIONS {
            let (exts, _) = expect(content, TAG_SEQUENCE)?;
            read_extensions(exts, &mut info)?;
        }
    }
    Some(info)
}

fn read_extensions(mut exts: &[u8], info: &mut CertInfo) -> Option<()> {
    while !exts.is_empty() {
        let (ext, after) = expect(exts, TAG_SEQUENCE)?;
        exts = after;
        let (oid, mut body) = expect(ext, TAG_OID)?;
        if let Some((TAG_BOOLEAN, _, after)) = tlv(body) {
            body = after;
        }
        let (value, _) = expect(body, TAG_OCTET_STRING)?;
        if oid == OID_SUBJECT_ALT_NAME {
            let (mut names, _) = expect(value, TAG_SEQUENCE)?;
            while let Some((tag, name, after)) = tlv(names) {
                names = after;
                match (tag, name.len()) {
                    (TAG_SAN_DNS, _) => {
                        info.dns_names.push(String::from_utf8(name.to_vec()).ok()?);
                    }
                    (TAG_SAN_IP, 4) => {
                        let octets: [u8; 4] = name.try_into().ok()?;
                        info.ip_addrs.push(IpAddr::V4(Ipv4Addr::from(octets)));
                    }
                    (TAG_SAN_IP, 16) => {
                        let octets: [u8; 16] = name.try_into().ok()?;
                        info.ip_addrs.push(IpAddr::V6(Ipv6Addr::from(octets)));
                    }
                    _ => {}
                }
            }
        }
    }
    Some(())
}

/// First commonName in a Name (given as the content of its SEQUENCE).
fn common_name(mut name: &[u8]) -> Option<String> {
    while let Some((TAG_SET, rdn, after)) = tlv(name) {
        name = after;
        let mut atvs = rdn;
        while let Some((TAG_SEQUENCE, atv, after)) = tlv(atvs) {
            atvs = after;
            let (oid, value) = expect(atv, TAG_OID)?;
            if oid == OID_COMMON_NAME {
                let (_string_tag, text, _) = tlv(value)?;
                return String::from_utf8(text.to_vec()).ok();
            }
        }
    }
    None
}

/// UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`) to
/// Unix seconds.
fn parse_time(tag: u8, text: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(text).ok()?.strip_suffix('Z')?;
    let (year, rest) = match tag {
        TAG_UTC_TIME if text.len() == 12 => {
            let yy: i32 = text.get(..2)?.parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &text[2..])
        }
        TAG_GENERALIZED_TIME if text.len() == 14 => (text.get(..4)?.parse().ok()?, &text[4..]),
        _ => return None,
    };
    let field = |i: usize| -> Option<u8> { rest.get(i..i + 2)?.parse().ok() };
    let month = time::Month::try_from(field(0)?).ok()?;
    let date = time::Date::from_calendar_date(year, month, field(2)?).ok()?;
    let datetime = date.with_hms(field(4)?, field(6)?, field(8)?).ok()?;
    Some(datetime.assume_utc().unix_timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_time_forms() {
        assert_eq!(parse_time(TAG_UTC_TIME, b"700101000000Z"), Some(0));
        assert_eq!(
            parse_time(TAG_UTC_TIME, b"491231235959Z"),
            Some(2_524_607_999)
        );
        assert_eq!(
            parse_time(TAG_GENERALIZED_TIME, b"20000101000000Z"),
            Some(946_684_800)
        );
        assert_eq!(parse_time(TAG_UTC_TIME, b"7001010000Z"), None);
    }

    #[test]
    fn rejects_truncated_input() {
        assert_eq!(tlv(&[0x30, 0x05, 0x00]), None);
        assert_eq!(tlv(&[0x30, 0x81]), None);
        assert!(parse_cert(&[0x30, 0x00]).is_none());
    }

    #[test]
    fn long_form_length() {
        let mut der = vec![0x04, 0x81, 0x80];
        der.extend(std::iter::repeat_n(7u8, 0x80));
        let (tag, content, rest) = tlv(&der).expect("valid TLV");
        assert_eq!((tag, content.len(), rest.len()), (0x04, 0x80, 0));
    }
}
