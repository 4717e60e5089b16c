//! What alice's finished download says about the move, without I/O: did
//! it survive (exit 0, every copy intact, one connection, running from
//! before the migration until after its handoff), her throughput before,
//! during and after, and the stall during the move.

use crate::session::Stall;

use super::curl::Finished;
use super::progress::{self, RESOLUTION_MS};
use super::summary::Session;

/// When the move happened, ms after the download started.
#[derive(Debug, Clone, Copy)]
pub struct Timeline {
    /// The migration started (its report's `started_at`).
    pub moved_from_ms: u64,
    /// The source agent reported it done, handoff included.
    pub moved_to_ms: u64,
}

/// What was asked of the download.
#[derive(Debug, Clone)]
pub struct Asked {
    /// The client's command.
    pub client: String,
    /// Its URL.
    pub url: String,
    /// Copies.
    pub copies: u32,
    /// Bytes of one copy.
    pub copy_bytes: u64,
    /// FNV-1a 64 of the file, as the guest wrote it.
    pub checksum: u64,
}

/// The download's throughput in the story's three windows, Mbit/s.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rates {
    /// From its first second until the migration.
    pub before: Option<f64>,
    /// During the migration and its handoff.
    pub during: Option<f64>,
    /// From half a second after the handoff until the download ended.
    pub after: Option<f64>,
}

/// The outcome.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The session's summary.
    pub session: Session,
    /// Throughput.
    pub rates: Rates,
    /// The stall from the migration's start until a second after its end.
    pub stall: Stall,
    /// Where its longest gap began, ms after the migration's start.
    pub stall_at_ms: u64,
}

/// A window shorter than this gives no throughput figure, ms.
const MIN_WINDOW_MS: u64 = 200;
/// The stall window reaches this far past the migration's end, ms.
const STALL_TAIL_MS: u64 = 1000;

/// Judges the finished download against the timeline.
pub fn judge(done: &Finished, asked: &Asked, t: Timeline) -> Outcome {
    let last = done.arrivals.last().map_or(0, |a| a.at_ms);
    let stall_to = t.moved_to_ms + STALL_TAIL_MS;
    let spanned = last >= stall_to
        && done
            .arrivals
            .first()
            .is_some_and(|a| a.at_ms < t.moved_from_ms);
    let gaps = progress::gaps_between(
        &done.arrivals,
        t.moved_from_ms,
        stall_to.min(last.max(t.moved_from_ms + RESOLUTION_MS)),
    );
    let verified = done
        .checksums
        .iter()
        .filter(|c| **c == asked.checksum)
        .count();
    let connections: u32 = done.transfers.iter().map(|t| t.connects).sum();
    let every_transfer = done.transfers.len() == asked.copies as usize
        && done
            .transfers
            .iter()
            .all(|t| t.http_code == 200 && t.size == asked.copy_bytes);
    let window = |from: u64, to: u64| {
        let to = to.min(last);
        (to >= from + MIN_WINDOW_MS)
            .then(|| progress::mbit_between(&done.arrivals, from, to))
            .flatten()
    };
    Outcome {
        session: Session {
            client: asked.client.clone(),
            url: asked.url.clone(),
            copies: asked.copies,
            copy_bytes: asked.copy_bytes,
            bytes: done.bytes,
            exit_code: done.exit_code,
            verified_copies: u32::try_from(verified).unwrap_or(u32::MAX),
            connections,
            spanned,
            alive: done.exit_code == Some(0)
                && verified == asked.copies as usize
                && every_transfer
                && connections == 1
                && spanned,
            errors: done.errors.clone(),
        },
        rates: Rates {
            before: window(1000, t.moved_from_ms),
            during: window(t.moved_from_ms, t.moved_to_ms),
            after: window(t.moved_to_ms + 500, last),
        },
        stall: gaps.map(|g| g.stall()).unwrap_or_default(),
        stall_at_ms: gaps.map_or(0, |g| g.max_at_ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::curl::Transfer;
    use crate::demo::progress::Arrival;

    fn asked() -> Asked {
        Asked {
            client: "curl".into(),
            url: "http://10.10.0.2/demo.bin".into(),
            copies: 2,
            copy_bytes: 1000,
            checksum: 7,
        }
    }

    /// 1 byte every 5 ms for 20 s, silent in 10_000..10_800.
    fn finished() -> Finished {
        let arrivals: Vec<Arrival> = (0..20_000)
            .step_by(5)
            .filter(|t| !(10_000..10_800).contains(t))
            .map(|at_ms| Arrival { at_ms, bytes: 1 })
            .collect();
        Finished {
            exit_code: Some(0),
            bytes: arrivals.len() as u64,
            arrivals,
            checksums: vec![7, 7],
            transfers: vec![
                Transfer {
                    http_code: 200,
                    size: 1000,
                    connects: 1,
                },
                Transfer {
                    http_code: 200,
                    size: 1000,
                    connects: 0,
                },
            ],
            errors: Vec::new(),
        }
    }

    const T: Timeline = Timeline {
        moved_from_ms: 5_000,
        moved_to_ms: 15_000,
    };

    #[test]
    fn a_download_through_the_move_is_alive_and_its_freeze_placed() {
        let o = judge(&finished(), &asked(), T);
        assert!(o.session.alive, "{o:?}");
        assert!(o.session.spanned);
        assert_eq!(o.session.verified_copies, 2);
        assert_eq!(o.stall.max_ms, 810);
        assert_eq!(o.stall_at_ms, 4_990);
        assert!(o.rates.before.is_some() && o.rates.after.is_some());
    }

    #[test]
    fn a_reconnect_a_bad_copy_or_an_early_end_is_not_alive() {
        let mut reconnected = finished();
        reconnected.transfers[1].connects = 1;
        assert!(!judge(&reconnected, &asked(), T).session.alive);

        let mut damaged = finished();
        damaged.checksums[1] = 8;
        let o = judge(&damaged, &asked(), T);
        assert!(!o.session.alive);
        assert_eq!(o.session.verified_copies, 1);

        let short = Timeline {
            moved_from_ms: 5_000,
            moved_to_ms: 19_500,
        };
        let o = judge(&finished(), &asked(), short);
        assert!(!o.session.spanned && !o.session.alive, "{o:?}");

        let mut failed = finished();
        failed.exit_code = Some(18);
        assert!(!judge(&failed, &asked(), T).session.alive);
    }
}
