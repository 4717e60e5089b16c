//! Migration ids: 16 lowercase hex digits (64 random bits), chosen by the
//! source, carried in every peer call, report and log line of the
//! migration.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A migration's id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MigrationId(String);

/// A string that is no migration id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid migration id {0:?}: 16 lowercase hex digits expected")]
pub struct InvalidId(pub String);

impl MigrationId {
    /// A fresh random id.
    pub fn random() -> Self {
        use ring::rand::SecureRandom;
        let mut bytes = [0u8; 8];
        // The system's randomness does not fail on Linux; a clock-derived
        // id would still be unique enough for one site.
        if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            bytes = (nanos as u64).to_be_bytes();
        }
        Self(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for MigrationId {
    type Error = InvalidId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        let ok = s.len() == 16
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if ok { Ok(Self(s)) } else { Err(InvalidId(s)) }
    }
}

impl std::str::FromStr for MigrationId {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::try_from(s.to_string())
    }
}

impl From<MigrationId> for String {
    fn from(id: MigrationId) -> Self {
        id.0
    }
}

impl fmt::Display for MigrationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_random_hex_and_checked() {
        let a = MigrationId::random();
        let b = MigrationId::random();
        assert_ne!(a, b);
        assert_eq!(a.as_str().parse::<MigrationId>().unwrap(), a);
        for bad in [
            "",
            "0123",
            "0123456789ABCDEF",
            "0123456789abcdeg",
            "../../etc/passwd",
        ] {
            assert!(bad.parse::<MigrationId>().is_err(), "{bad}");
        }
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<MigrationId>(&json).unwrap(), a);
        assert!(serde_json::from_str::<MigrationId>("\"nope\"").is_err());
    }
}
