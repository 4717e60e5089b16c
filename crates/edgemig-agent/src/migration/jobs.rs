//! The persisted record of each migration at each site, written before the
//! agent acts on a phase (the store's `jobs` table, one JSON record per
//! migration id). A restarted agent reads them back and recovers
//! (`migration::recovery`).
//!
//! A source keeps its record until nothing of the migration is left here
//! (rolled back, or the tunnel to the destination closed). A destination
//! keeps its record, once ended, as a tombstone for [`TOMBSTONE_TTL`], so a
//! source that asks again about an old migration gets the same answer.

use std::net::Ipv4Addr;
use std::time::Duration;

use edgemig_api::peer::HandoffStatus;
use edgemig_migration::{DestinationPhase, MigrateOptions, SourcePhase};
use serde::{Deserialize, Serialize};

use super::id::MigrationId;

/// How long an ended destination record answers for its migration.
pub const TOMBSTONE_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// The tunnel that keeps a migrated VM's old address reachable, at the
/// source: a VXLAN from this site's VM bridge to the destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceTunnel {
    /// VXLAN network id.
    pub vni: u32,
    /// The destination's address.
    pub remote: Ipv4Addr,
    /// MAC of the VM's NIC on this site's network (its DHCP lease stays
    /// while the tunnel is open).
    pub mac: String,
    /// The VM's address on this site's network.
    pub address: Ipv4Addr,
}

/// A migration this site drives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceJob {
    /// Destination site.
    pub to: String,
    /// Where it is.
    pub phase: SourcePhase,
    /// What the operator asked for.
    pub options: MigrateOptions,
    /// The tunnel opened for it, if any.
    #[serde(default)]
    pub tunnel: Option<SourceTunnel>,
    /// What the source last learned while the outcome is unknown (shown
    /// by `migrations` and `vm show`).
    #[serde(default)]
    pub note: Option<String>,
}

/// A migration arriving here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DestinationJob {
    /// Source site (the only peer that may act on this migration).
    pub from: String,
    /// Where it is.
    pub phase: DestinationPhase,
    /// The source's address (the tunnel's remote end).
    pub tunnel_remote: Ipv4Addr,
    /// Why the network handoff does not run, when it does not.
    #[serde(default)]
    pub skip_handoff: Option<String>,
    /// The handoff's progress.
    #[serde(default)]
    pub handoff: Option<HandoffStatus>,
    /// When the record ended (tombstones expire), Unix ms.
    #[serde(default)]
    pub ended_at_ms: Option<u64>,
}

/// Which side of the migration this site is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "side", rename_all = "snake_case")]
pub enum JobSide {
    /// The VM leaves from here.
    Source(SourceJob),
    /// The VM arrives here.
    Destination(DestinationJob),
}

/// One migration's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// Its id.
    pub id: MigrationId,
    /// The VM.
    pub vm: String,
    /// When it started (at the source), Unix ms.
    pub started_at_ms: u64,
    /// This site's side.
    #[serde(flatten)]
    pub side: JobSide,
}

impl JobRecord {
    /// The source side, if this site is the source.
    pub fn source(&self) -> Option<&SourceJob> {
        match &self.side {
            JobSide::Source(s) => Some(s),
            JobSide::Destination(_) => None,
        }
    }

    /// The destination side, if this site is the destination.
    pub fn destination(&self) -> Option<&DestinationJob> {
        match &self.side {
            JobSide::Destination(d) => Some(d),
            JobSide::Source(_) => None,
        }
    }

    /// Whether the record is a destination tombstone past its time.
    pub fn expired(&self, now_ms: u64) -> bool {
        self.destination()
            .and_then(|d| d.ended_at_ms)
            .is_some_and(|ended| {
                now_ms.saturating_sub(ended)
                    > u64::try_from(TOMBSTONE_TTL.as_millis()).unwrap_or(u64::MAX)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_with_their_side() {
        let source = JobRecord {
            id: MigrationId::random(),
            vm: "web".into(),
            started_at_ms: 1,
            side: JobSide::Source(SourceJob {
                to: "site-b".into(),
                phase: SourcePhase::AwaitingCommit {
                    paused_at: Duration::from_millis(20),
                },
                options: MigrateOptions::default(),
                tunnel: Some(SourceTunnel {
                    vni: 7,
                    remote: Ipv4Addr::new(172, 31, 0, 2),
                    mac: "52:54:00:00:00:07".into(),
                    address: Ipv4Addr::new(10, 10, 0, 7),
                }),
                note: None,
            }),
        };
        let v = serde_json::to_value(&source).unwrap();
        assert_eq!(v["side"], "source");
        assert_eq!(v["phase"]["phase"], "awaiting_commit");
        assert_eq!(serde_json::from_value::<JobRecord>(v).unwrap(), source);
        let dest = JobRecord {
            id: MigrationId::random(),
            vm: "web".into(),
            started_at_ms: 1,
            side: JobSide::Destination(DestinationJob {
                from: "site-a".into(),
                phase: DestinationPhase::Aborted,
                tunnel_remote: Ipv4Addr::new(172, 31, 0, 1),
                skip_handoff: None,
                handoff: None,
                ended_at_ms: Some(1000),
            }),
        };
        let back: JobRecord = serde_json::from_value(serde_json::to_value(&dest).unwrap()).unwrap();
        assert_eq!(back, dest);
        assert!(!dest.expired(2000));
        assert!(dest.expired(1000 + 8 * 24 * 3600 * 1000));
        assert!(!source.expired(u64::MAX));
    }
}
