//! Ethernet MAC addresses, the key of the lease table (the `chaddr` of a
//! client's message).

use std::fmt;
use std::str::FromStr;

/// A 48-bit Ethernet address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr([u8; 6]);

/// A string that is not a MAC address.
#[derive(Debug, thiserror::Error)]
#[error("Invalid MAC address {0:?}: expected six hex bytes separated by colons")]
pub struct MacParseError(String);

impl MacAddr {
    /// The address with these six bytes.
    pub const fn new(octets: [u8; 6]) -> Self {
        Self(octets)
    }

    /// Its six bytes.
    pub const fn octets(&self) -> [u8; 6] {
        self.0
    }
}

impl From<[u8; 6]> for MacAddr {
    fn from(octets: [u8; 6]) -> Self {
        Self(octets)
    }
}

impl FromStr for MacAddr {
    type Err = MacParseError;

    /// Parses `52:54:00:ab:cd:ef` (either case), as the agent writes its
    /// VMs' MAC addresses.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || MacParseError(s.chars().take(64).collect());
        let mut octets = [0u8; 6];
        let mut parts = s.split(':');
        for octet in &mut octets {
            let part = parts.next().ok_or_else(invalid)?;
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(invalid());
            }
            *octet = u8::from_str_radix(part, 16).map_err(|_| invalid())?;
        }
        if parts.next().is_some() {
            return Err(invalid());
        }
        Ok(Self(octets))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_the_agents_format() {
        let mac: MacAddr = "52:54:01:AB:cd:0f".parse().unwrap();
        assert_eq!(mac.octets(), [0x52, 0x54, 0x01, 0xab, 0xcd, 0x0f]);
        assert_eq!(mac.to_string(), "52:54:01:ab:cd:0f");
    }

    #[test]
    fn rejects_other_strings() {
        for bad in [
            "",
            "52:54:00:00:00",
            "52:54:00:00:00:00:00",
            "52-54-00-00-00-00",
            "5:54:00:00:00:000",
            "52:54:00:00:00:zz",
            "52:54:00:00:00:+1",
            "52:54:00:00:00:",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad:?}");
        }
    }
}
