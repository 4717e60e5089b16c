//! MPTCP subflow information: the `INET_DIAG_ULP_INFO` attribute of a TCP
//! socket whose upper-layer protocol is `mptcp` (what `ss -tiM` prints as
//! `tcp-ulp-mptcp`), decoded from its raw nested attributes, which
//! `netlink-packet-sock-diag` leaves undecoded.

use std::fmt;

use netlink_packet_core::{NLA_TYPE_MASK, NlasIterator};

/// `INET_ULP_INFO_NAME`: the ULP's name, a NUL-terminated string.
const INET_ULP_INFO_NAME: u16 = 1;
/// `INET_ULP_INFO_MPTCP`: nested `MPTCP_SUBFLOW_ATTR_*` attributes.
const INET_ULP_INFO_MPTCP: u16 = 3;

const MPTCP_SUBFLOW_ATTR_TOKEN_REM: u16 = 1;
const MPTCP_SUBFLOW_ATTR_TOKEN_LOC: u16 = 2;
const MPTCP_SUBFLOW_ATTR_FLAGS: u16 = 8;
const MPTCP_SUBFLOW_ATTR_ID_REM: u16 = 9;
const MPTCP_SUBFLOW_ATTR_ID_LOC: u16 = 10;

/// A malformed `INET_DIAG_ULP_INFO` attribute.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UlpError {
    /// A nested attribute header is cut short.
    #[error("Truncated attribute in the ULP info")]
    Truncated,
    /// An attribute has a size its type does not allow.
    #[error("MPTCP subflow attribute {kind} has {len} bytes, expected {expected}")]
    BadLength {
        /// `MPTCP_SUBFLOW_ATTR_*` number.
        kind: u16,
        /// Length found.
        len: usize,
        /// Length its type has.
        expected: usize,
    },
}

/// Subflow flags (`MPTCP_SUBFLOW_FLAG_*`), a small bit set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SubflowFlags(u32);

impl SubflowFlags {
    /// MP_CAPABLE was negotiated on the subflow.
    pub const MCAP_REM: Self = Self(1 << 0);
    /// This host requested MP_CAPABLE: the initial subflow of a connection
    /// it opened.
    pub const MCAP_LOC: Self = Self(1 << 1);
    /// MP_JOIN was negotiated on the subflow.
    pub const JOIN_REM: Self = Self(1 << 2);
    /// This host requested MP_JOIN: an additional subflow it opened.
    pub const JOIN_LOC: Self = Self(1 << 3);
    /// The subflow is a backup path.
    pub const BKUP_REM: Self = Self(1 << 4);
    /// This host requested the subflow to be a backup path.
    pub const BKUP_LOC: Self = Self(1 << 5);
    /// The MPTCP handshake completed.
    pub const FULLY_ESTABLISHED: Self = Self(1 << 6);
    /// The subflow is connected.
    pub const CONNECTED: Self = Self(1 << 7);
    /// The current DSS mapping is valid.
    pub const MAPVALID: Self = Self(1 << 8);

    const NAMES: [(Self, &'static str); 9] = [
        (Self::MCAP_REM, "mcap_rem"),
        (Self::MCAP_LOC, "mcap_loc"),
        (Self::JOIN_REM, "join_rem"),
        (Self::JOIN_LOC, "join_loc"),
        (Self::BKUP_REM, "backup_rem"),
        (Self::BKUP_LOC, "backup_loc"),
        (Self::FULLY_ESTABLISHED, "fully_established"),
        (Self::CONNECTED, "connected"),
        (Self::MAPVALID, "mapvalid"),
    ];

    /// Flags from the raw kernel bit mask (unknown bits are kept).
    pub const fn from_bits(bits: u32) -> Self {
        Self(bits)
    }

    /// The raw kernel bit mask.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// True when every bit of `other` is set in `self`.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for SubflowFlags {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl fmt::Display for SubflowFlags {
    /// Comma-separated names, unknown bits in hex.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        let mut sep = "";
        for (flag, name) in Self::NAMES {
            if self.contains(flag) {
                write!(f, "{sep}{name}")?;
                sep = ",";
                rest &= !flag.0;
            }
        }
        if rest != 0 {
            write!(f, "{sep}{rest:#x}")?;
        }
        Ok(())
    }
}

/// What the kernel reports of an MPTCP subflow.
///
/// Tokens are only reported to a caller with `CAP_NET_ADMIN` in the
/// socket's namespace; without it they read as 0. They are also 0 on a
/// listening socket and until the MPTCP handshake has produced them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SubflowInfo {
    /// Token of the MPTCP connection on this host: every subflow of one
    /// connection has the same (`MPTCP_SUBFLOW_ATTR_TOKEN_LOC`).
    pub token_local: u32,
    /// Token of the connection at the peer (`MPTCP_SUBFLOW_ATTR_TOKEN_REM`).
    /// The kernel only knows it on a subflow this host joined (MP_JOIN
    /// initiator); it is 0 on the initial subflow and on the passive side.
    pub token_remote: u32,
    /// Address id of the local end (0 for the initial subflow).
    pub id_local: u8,
    /// Address id of the remote end.
    pub id_remote: u8,
    /// Subflow flags.
    pub flags: SubflowFlags,
}

fn fixed<const N: usize>(kind: u16, v: &[u8]) -> Result<[u8; N], UlpError> {
    <[u8; N]>::try_from(v).map_err(|_| UlpError::BadLength {
        kind,
        len: v.len(),
        expected: N,
    })
}

/// Decodes the value of an `INET_DIAG_ULP_INFO` attribute: `Some` when the
/// ULP is `mptcp`, `None` for any other ULP (kTLS, say).
pub(crate) fn parse_ulp_info(value: &[u8]) -> Result<Option<SubflowInfo>, UlpError> {
    let mut name_is_mptcp = false;
    let mut mptcp_attrs = None;
    for nla in NlasIterator::new(value) {
        let nla = nla.map_err(|_| UlpError::Truncated)?;
        match nla.kind() & NLA_TYPE_MASK {
            INET_ULP_INFO_NAME => {
                let v = nla.value();
                let end = v.iter().position(|b| *b == 0).unwrap_or(v.len());
                name_is_mptcp = &v[..end] == b"mptcp";
            }
            INET_ULP_INFO_MPTCP => {
                let len = usize::from(nla.length());
                mptcp_attrs = nla.into_inner().get(4..len);
            }
            _ => {}
        }
    }
    if !name_is_mptcp {
        return Ok(None);
    }
    let mut info = SubflowInfo::default();
    for nla in NlasIterator::new(mptcp_attrs.unwrap_or_default()) {
        let nla = nla.map_err(|_| UlpError::Truncated)?;
        let kind = nla.kind() & NLA_TYPE_MASK;
        let v = nla.value();
        match kind {
            MPTCP_SUBFLOW_ATTR_TOKEN_REM => {
                info.token_remote = u32::from_ne_bytes(fixed(kind, v)?);
            }
            MPTCP_SUBFLOW_ATTR_TOKEN_LOC => {
                info.token_local = u32::from_ne_bytes(fixed(kind, v)?);
            }
            MPTCP_SUBFLOW_ATTR_FLAGS => {
                info.flags = SubflowFlags(u32::from_ne_bytes(fixed(kind, v)?));
            }
            MPTCP_SUBFLOW_ATTR_ID_REM => info.id_remote = fixed::<1>(kind, v)?[0],
            MPTCP_SUBFLOW_ATTR_ID_LOC => info.id_local = fixed::<1>(kind, v)?[0],
            _ => {}
        }
    }
    Ok(Some(info))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(value);
        out.resize(out.len().next_multiple_of(4), 0);
        out
    }

    #[test]
    fn mptcp_subflow_attributes_are_decoded() {
        let mut nested = Vec::new();
        nested.extend(attr(
            MPTCP_SUBFLOW_ATTR_TOKEN_REM,
            &0xdead_beefu32.to_ne_bytes(),
        ));
        nested.extend(attr(
            MPTCP_SUBFLOW_ATTR_TOKEN_LOC,
            &0x1234_5678u32.to_ne_bytes(),
        ));
        nested.extend(attr(4, &7u64.to_ne_bytes())); // MAP_SEQ: skipped
        nested.extend(attr(MPTCP_SUBFLOW_ATTR_FLAGS, &0xc8u32.to_ne_bytes()));
        nested.extend(attr(MPTCP_SUBFLOW_ATTR_ID_REM, &[0]));
        nested.extend(attr(MPTCP_SUBFLOW_ATTR_ID_LOC, &[2]));
        let mut ulp = attr(INET_ULP_INFO_NAME, b"mptcp\0");
        // The kernel may or may not set NLA_F_NESTED on the nest.
        ulp.extend(attr(INET_ULP_INFO_MPTCP | 0x8000, &nested));

        let info = parse_ulp_info(&ulp).unwrap().expect("mptcp");
        assert_eq!(
            info,
            SubflowInfo {
                token_local: 0x1234_5678,
                token_remote: 0xdead_beef,
                id_local: 2,
                id_remote: 0,
                flags: SubflowFlags::JOIN_LOC
                    | SubflowFlags::FULLY_ESTABLISHED
                    | SubflowFlags::CONNECTED,
            }
        );
        assert_eq!(
            info.flags.to_string(),
            "join_loc,fully_established,connected"
        );
    }

    #[test]
    fn other_ulps_and_malformed_values() {
        let tls = attr(INET_ULP_INFO_NAME, b"tls\0");
        assert_eq!(parse_ulp_info(&tls).unwrap(), None);

        let mut bad = attr(INET_ULP_INFO_NAME, b"mptcp\0");
        bad.extend(attr(
            INET_ULP_INFO_MPTCP,
            &attr(MPTCP_SUBFLOW_ATTR_TOKEN_LOC, &[1, 2]),
        ));
        assert!(matches!(
            parse_ulp_info(&bad),
            Err(UlpError::BadLength {
                kind: 2,
                len: 2,
                expected: 4
            })
        ));

        let mut cut = attr(INET_ULP_INFO_NAME, b"mptcp\0");
        cut.extend_from_slice(&[40, 0, 3, 0]);
        assert!(matches!(parse_ulp_info(&cut), Err(UlpError::Truncated)));
    }
}
