//! What the user asked for: [`MigrateOptions`] and its CLI string forms.
//!
//! JSON shape (all fields but none required, unknown fields rejected):
//!
//! ```json
//! {"transport": "mptcp", "compression": "zstd:3", "max_downtime_ms": 300,
//!  "bandwidth_limit_bps": null, "insecure": false, "postcopy": "never",
//!  "handoff": true, "multifd_channels": 4}
//! ```
//!
//! `multifd_channels` is left out when not set (the transport's default:
//! [`crate::plan::MPTCP_MULTIFD_CHANNELS`] with MPTCP when it compresses,
//! otherwise one stream).
//!
//! `compression` uses the same string form as the CLI (`auto`, `none`,
//! `zstd`, `zstd:LEVEL`) so that a request, a log line and the report all
//! spell it the same way.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Default `max_downtime`, a third of QEMU's own default `downtime-limit`
/// (300 ms): QEMU switches over once the rest fits in it at the paths'
/// rate, so its downtime follows this figure (one stream, idle 256 MiB
/// guest: 33 ms of QEMU downtime at 50 ms, 256 ms at 300 ms).
pub const DEFAULT_MAX_DOWNTIME: Duration = Duration::from_millis(100);
/// Largest downtime QEMU accepts (`MAX_MIGRATE_DOWNTIME`, 2000 s).
pub const MAX_DOWNTIME: Duration = Duration::from_secs(2000);
/// Lowest zstd level QEMU's `multifd-zstd-level` is given by edgemig.
pub const MIN_ZSTD_LEVEL: u8 = 1;
/// Highest zstd level QEMU's `multifd-zstd-level` accepts.
pub const MAX_ZSTD_LEVEL: u8 = 20;
/// Fewest multifd channels a request may ask for.
pub const MIN_MULTIFD_CHANNELS: u8 = 1;
/// Most multifd channels a request may ask for (the destination refuses
/// more from a peer).
pub const MAX_MULTIFD_CHANNELS: u8 = 16;

/// Errors from parsing or validating options.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    /// Unknown `--transport` value.
    #[error("unknown transport {0:?} (expected \"mptcp\" or \"tcp\")")]
    Transport(String),
    /// Unknown or malformed `--compression` value.
    #[error("bad compression {0:?} (expected \"auto\", \"none\", \"zstd\" or \"zstd:LEVEL\")")]
    Compression(String),
    /// zstd level outside what QEMU accepts.
    #[error("zstd level {0} out of range {MIN_ZSTD_LEVEL}..={MAX_ZSTD_LEVEL}")]
    ZstdLevel(u8),
    /// Unknown `--postcopy` value.
    #[error("unknown postcopy policy {0:?} (expected \"never\" or \"fallback\")")]
    Postcopy(String),
    /// Downtime zero or above QEMU's maximum.
    #[error("max downtime {0:?} must be > 0 and <= 2000 s")]
    Downtime(Duration),
    /// A bandwidth limit of zero would stall the migration.
    #[error("bandwidth limit must be > 0 bit/s")]
    BandwidthLimit,
    /// multifd channel count out of range.
    #[error(
        "The multifd channel count {0} is out of range {MIN_MULTIFD_CHANNELS}..={MAX_MULTIFD_CHANNELS}"
    )]
    MultifdChannels(u8),
    /// multifd asked for together with postcopy, which QEMU 10.0 refuses.
    #[error(
        "The multifd channels cannot be combined with postcopy fallback (QEMU refuses multifd with postcopy)"
    )]
    MultifdWithPostcopy,
}

/// How the migration streams travel between the sites.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// MPTCP over every path, multifd channels, compression as planned.
    #[default]
    Mptcp,
    /// One TCP path: by default the plain-QEMU baseline (one connection, no
    /// multifd, no compression); with `multifd_channels`, that many TCP
    /// connections over the same path, compressed as requested.
    Tcp,
}

impl Transport {
    /// The CLI / JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Mptcp => "mptcp",
            Transport::Tcp => "tcp",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Transport {
    type Err = OptionsError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "mptcp" => Ok(Transport::Mptcp),
            "tcp" => Ok(Transport::Tcp),
            _ => Err(OptionsError::Transport(s.to_owned())),
        }
    }
}

/// What compression the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Compression {
    /// Let the planner decide from bandwidth and spare CPU
    /// (see [`crate::compression`]).
    #[default]
    Auto,
    /// Never compress.
    None,
    /// Always compress with zstd; `level: None` (`"zstd"`) lets the planner
    /// pick the level, `Some(n)` (`"zstd:n"`) forces it.
    Zstd {
        /// Forced zstd level, 1..=20, or `None` for the planner's choice.
        level: Option<u8>,
    },
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Compression::Auto => f.write_str("auto"),
            Compression::None => f.write_str("none"),
            Compression::Zstd { level: None } => f.write_str("zstd"),
            Compression::Zstd { level: Some(l) } => write!(f, "zstd:{l}"),
        }
    }
}

impl FromStr for Compression {
    type Err = OptionsError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        match lower.as_str() {
            "auto" => return Ok(Compression::Auto),
            "none" => return Ok(Compression::None),
            "zstd" => return Ok(Compression::Zstd { level: None }),
            _ => {}
        }
        let level = lower
            .strip_prefix("zstd:")
            .and_then(|l| l.parse::<u8>().ok())
            .ok_or_else(|| OptionsError::Compression(s.to_owned()))?;
        if !(MIN_ZSTD_LEVEL..=MAX_ZSTD_LEVEL).contains(&level) {
            return Err(OptionsError::ZstdLevel(level));
        }
        Ok(Compression::Zstd { level: Some(level) })
    }
}

impl TryFrom<String> for Compression {
    type Error = OptionsError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Compression> for String {
    fn from(c: Compression) -> String {
        c.to_string()
    }
}

/// Whether postcopy may be used as the last resort for a guest that does
/// not converge.
///
/// QEMU 10.0 refuses multifd together with postcopy, so `Fallback` makes the
/// plan use a single (MPTCP or TCP) migration stream, without multifd and
/// hence without multifd compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PostcopyPolicy {
    /// Never switch to postcopy; rely on auto-converge only.
    #[default]
    Never,
    /// Enable `postcopy-ram` (no multifd) and start postcopy when
    /// auto-converge does not make the guest converge.
    Fallback,
}

impl fmt::Display for PostcopyPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PostcopyPolicy::Never => "never",
            PostcopyPolicy::Fallback => "fallback",
        })
    }
}

impl FromStr for PostcopyPolicy {
    type Err = OptionsError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "never" => Ok(PostcopyPolicy::Never),
            "fallback" => Ok(PostcopyPolicy::Fallback),
            _ => Err(OptionsError::Postcopy(s.to_owned())),
        }
    }
}

/// A user's migration request (`edgemig migrate` flags / API body).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MigrateOptions {
    /// Transport for memory and disk streams: `"mptcp"` (default) or
    /// `"tcp"` (plain-QEMU baseline).
    pub transport: Transport,
    /// Compression request: `"auto"` (default), `"none"`, `"zstd"` or
    /// `"zstd:LEVEL"`; applied by the multifd channels, so ignored (no
    /// compression) when the plan has none: `transport: "tcp"` without
    /// `multifd_channels`, or `postcopy: "fallback"`.
    pub compression: Compression,
    /// Longest acceptable pause of the guest at switchover (QEMU's
    /// `downtime-limit`); JSON `max_downtime_ms`, default 100 ([`DEFAULT_MAX_DOWNTIME`]).
    #[serde(rename = "max_downtime_ms", with = "duration_ms")]
    pub max_downtime: Duration,
    /// Cap on the migration rate in bits per second; `None` (default)
    /// means "as fast as the paths allow".
    pub bandwidth_limit_bps: Option<u64>,
    /// Migrate without TLS between the sites (testbeds only); default false.
    pub insecure: bool,
    /// Whether postcopy may be the last resort for a non-converging guest;
    /// `"never"` (default) or `"fallback"`.
    pub postcopy: PostcopyPolicy,
    /// Move the VM's address to the destination's network after the
    /// migration (default true); false keeps it behind the tunnel (the
    /// baseline of `edgemig bench handoff`).
    pub handoff: bool,
    /// multifd channels (1..=16); JSON `multifd_channels`. `None`
    /// (default) takes the transport's default: 4 with `mptcp`, one stream
    /// without multifd with `tcp`. Not with `postcopy: "fallback"`.
    #[serde(rename = "multifd_channels", skip_serializing_if = "Option::is_none")]
    pub multifd: Option<u8>,
}

impl Default for MigrateOptions {
    fn default() -> Self {
        MigrateOptions {
            transport: Transport::default(),
            compression: Compression::default(),
            max_downtime: DEFAULT_MAX_DOWNTIME,
            bandwidth_limit_bps: None,
            insecure: false,
            postcopy: PostcopyPolicy::default(),
            handoff: true,
            multifd: None,
        }
    }
}

impl MigrateOptions {
    /// Check the values that parsing alone cannot (ranges).
    pub fn validate(&self) -> Result<(), OptionsError> {
        if self.max_downtime.is_zero() || self.max_downtime > MAX_DOWNTIME {
            return Err(OptionsError::Downtime(self.max_downtime));
        }
        if self.bandwidth_limit_bps == Some(0) {
            return Err(OptionsError::BandwidthLimit);
        }
        if let Compression::Zstd { level: Some(l) } = self.compression
            && !(MIN_ZSTD_LEVEL..=MAX_ZSTD_LEVEL).contains(&l)
        {
            return Err(OptionsError::ZstdLevel(l));
        }
        if let Some(n) = self.multifd {
            if !(MIN_MULTIFD_CHANNELS..=MAX_MULTIFD_CHANNELS).contains(&n) {
                return Err(OptionsError::MultifdChannels(n));
            }
            if self.postcopy == PostcopyPolicy::Fallback {
                return Err(OptionsError::MultifdWithPostcopy);
            }
        }
        Ok(())
    }
}

/// Serde helper: a [`Duration`] as whole milliseconds.
mod duration_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

#[cfg(test)]
#[path = "options_tests.rs"]
mod tests;
