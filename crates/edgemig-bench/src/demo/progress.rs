//! What a download's progress says, computed without I/O from the times
//! its bytes arrived: throughput in a window and the stall a client saw,
//! sampled as a probe every 10 ms would see it.
//!
//! The stall is measured as an echo session measures it: time is cut into
//! 10 ms slots, a slot in which bytes arrived is an answer, and the gaps
//! between consecutive answers are the session's gaps (the first from the
//! window's start, the one still open at its end included). A download
//! that is not throttled (no `--limit-rate`) reads whatever the network
//! delivers, so its gaps are the network's; a throttled one would hide a
//! freeze behind its socket buffer.

/// Sampling resolution of the stall, ms.
pub const RESOLUTION_MS: u64 = 10;

use crate::session::Stall;

/// The gaps a client saw in a window, at [`RESOLUTION_MS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gaps {
    /// Longest gap between answers, ms.
    pub max_ms: u64,
    /// 99th percentile (nearest rank) of the gaps, ms.
    pub p99_ms: u64,
    /// Where the longest gap began, ms after the window's start.
    pub max_at_ms: u64,
}

impl Gaps {
    /// As an echo session reports it.
    pub fn stall(&self) -> Stall {
        Stall {
            max_ms: self.max_ms,
            p99_ms: self.p99_ms,
        }
    }
}

/// One read of the download: when (ms after its start) and how many bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    /// Ms after the download started.
    pub at_ms: u64,
    /// Bytes read.
    pub bytes: u64,
}

/// Bytes that arrived in `[from_ms, to_ms)`, as Mbit/s over that window;
/// `None` for an empty window.
pub fn mbit_between(arrivals: &[Arrival], from_ms: u64, to_ms: u64) -> Option<f64> {
    if to_ms <= from_ms {
        return None;
    }
    let bytes: u64 = arrivals
        .iter()
        .filter(|a| a.at_ms >= from_ms && a.at_ms < to_ms)
        .map(|a| a.bytes)
        .sum();
    Some(bytes as f64 * 8.0 / ((to_ms - from_ms) as f64 * 1000.0))
}

/// The gaps in `[from_ms, to_ms)`; `None` for a window shorter than one
/// slot.
pub fn gaps_between(arrivals: &[Arrival], from_ms: u64, to_ms: u64) -> Option<Gaps> {
    let first = from_ms / RESOLUTION_MS;
    let end = to_ms / RESOLUTION_MS;
    if end <= first {
        return None;
    }
    let mut slots: Vec<u64> = arrivals
        .iter()
        .filter(|a| a.bytes > 0)
        .map(|a| a.at_ms / RESOLUTION_MS)
        .filter(|s| (first..end).contains(s))
        .collect();
    slots.dedup();
    let mut gaps = Vec::with_capacity(slots.len() + 1);
    let mut previous = first;
    let mut longest = (0, 0);
    for slot in slots.iter().copied().chain(std::iter::once(end)) {
        let gap = (slot - previous) * RESOLUTION_MS;
        if gap > longest.0 {
            longest = (gap, (previous - first) * RESOLUTION_MS);
        }
        // An answer in the window's first slot, or in its last one, leaves
        // a zero-length remainder, which is no gap.
        if gap > 0 {
            gaps.push(gap);
        }
        previous = slot;
    }
    gaps.sort_unstable();
    let rank = (gaps.len() * 99).div_ceil(100).max(1);
    Some(Gaps {
        max_ms: longest.0,
        p99_ms: gaps.get(rank - 1).copied().unwrap_or(longest.0),
        max_at_ms: longest.1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steady(from_ms: u64, to_ms: u64, every_ms: u64) -> Vec<Arrival> {
        (from_ms..to_ms)
            .step_by(usize::try_from(every_ms).unwrap())
            .map(|at_ms| Arrival { at_ms, bytes: 1448 })
            .collect()
    }

    #[test]
    fn a_steady_stream_has_slot_sized_gaps() {
        let a = steady(0, 10_000, 3);
        let g = gaps_between(&a, 1_000, 9_000).unwrap();
        assert_eq!(g.max_ms, RESOLUTION_MS);
        assert_eq!(g.p99_ms, RESOLUTION_MS);
    }

    #[test]
    fn a_freeze_is_one_long_gap_placed_in_the_window() {
        let mut a = steady(0, 4_000, 2);
        a.extend(steady(4_730, 10_000, 2));
        let g = gaps_between(&a, 2_000, 9_000).unwrap();
        // The last slot with bytes before the freeze is 3990..4000, the
        // first after it 4730..4740.
        assert_eq!(g.max_ms, 740);
        assert_eq!(g.max_at_ms, 1_990);
        assert_eq!(g.p99_ms, RESOLUTION_MS, "one gap among 630 is not the p99");
    }

    #[test]
    fn many_freezes_reach_the_p99() {
        let mut a = Vec::new();
        // 10 s: 50 ms of data every 100 ms, i.e. a 60 ms gap every 100 ms.
        for start in (0..10_000).step_by(100) {
            a.extend(steady(start, start + 50, 5));
        }
        let g = gaps_between(&a, 0, 10_000).unwrap();
        assert_eq!(g.max_ms, 60);
        assert_eq!(g.p99_ms, 60);
    }

    #[test]
    fn a_stream_that_stopped_leaves_its_gap_open() {
        let a = steady(0, 3_000, 5);
        let g = gaps_between(&a, 0, 5_000).unwrap();
        assert_eq!(g.max_ms, 2_010);
        assert_eq!(g.max_at_ms, 2_990);
        assert!(gaps_between(&a, 100, 105).is_none());
    }

    #[test]
    fn throughput_counts_the_window_only() {
        let a = steady(0, 2_000, 1);
        // 1000 reads of 1448 bytes in one second.
        let mbit = mbit_between(&a, 500, 1_500).unwrap();
        assert!((mbit - 11.584).abs() < 1e-9, "{mbit}");
        assert!(mbit_between(&a, 5, 5).is_none());
        assert_eq!(mbit_between(&a, 3_000, 4_000), Some(0.0));
    }
}
