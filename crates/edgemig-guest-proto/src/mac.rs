//! [`MacAddr`]: an Ethernet address, carried as `"52:54:01:aa:bb:cc"` on
//! the wire. The host names a guest NIC by it (protocol 3): real
//! distributions call their NICs `enp0s3` or `ens4`, not `eth1`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A 48-bit MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MacAddr(pub [u8; 6]);

/// A string that is not `xx:xx:xx:xx:xx:xx` (hex, `:` or `-` separated).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid MAC address {0:?}")]
pub struct BadMac(pub String);

impl FromStr for MacAddr {
    type Err = BadMac;

    fn from_str(s: &str) -> Result<Self, BadMac> {
        let bad = || BadMac(s.to_string());
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in &mut out {
            let p = parts.next().ok_or_else(bad)?;
            if p.len() != 2 || !p.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(bad());
            }
            *byte = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Self(out))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl Serialize for MacAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prints_and_rejects() {
        let m: MacAddr = "52:54:01:0A:bb:0c".parse().unwrap();
        assert_eq!(m.0, [0x52, 0x54, 0x01, 0x0a, 0xbb, 0x0c]);
        assert_eq!(m.to_string(), "52:54:01:0a:bb:0c");
        assert_eq!("52-54-01-0a-bb-0c".parse::<MacAddr>().unwrap(), m);
        for bad in [
            "",
            "52:54:01:0a:bb",
            "52:54:01:0a:bb:0c:00",
            "52:54:1:0a:bb:0c",
            "zz:54:01:0a:bb:0c",
            "+2:54:01:0a:bb:0c",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, "\"52:54:01:0a:bb:0c\"");
        assert_eq!(serde_json::from_str::<MacAddr>(&json).unwrap(), m);
        assert!(serde_json::from_str::<MacAddr>("\"nope\"").is_err());
    }
}
