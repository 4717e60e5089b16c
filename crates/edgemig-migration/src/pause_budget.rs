//! How much of the VM's pause QEMU may spend sending: the user's
//! `max_downtime` bounds the whole pause (the source's `STOP` to the
//! destination's `RESUME`), while QEMU's `downtime-limit` only bounds what
//! QEMU still sends after the stop, at the rate it assumes. On top of that
//! come the bytes already in flight at the stop, which drain in about one
//! round trip of the slowest path (a sender keeps about one
//! bandwidth-delay product in flight), the last byte's one-way trip (half
//! a round trip), and edgemig's commit and resume ([`PAUSE_OVERHEAD`]).
//!
//! Measured on the reference testbed (2 × 50 Mbit/s, 10 ms each way, one
//! MPTCP stream, no TLS): QEMU done 123 ms after the stop with 780 KB
//! sent while paused, the destination's state complete 69 ms later, the
//! VM running 4 ms after that (`docs/results.md`, "Where the pause goes").

use std::time::Duration;

/// The commit (asked over a connection opened before the pause, answered
/// while the last bytes drain) and the destination's `cont`: 4–10 ms
/// measured after the state arrived.
pub const PAUSE_OVERHEAD: Duration = Duration::from_millis(10);

/// The least `downtime-limit` edgemig sets: QEMU's switchover needs a few
/// ms of its own (device state), and a limit of almost nothing would keep
/// an idle guest from ever converging.
pub const MIN_QEMU_DOWNTIME_LIMIT: Duration = Duration::from_millis(20);

/// What edgemig adds to QEMU's part of the pause when the slowest path's
/// smoothed round trip is `rtt`: the in-flight bytes' drain and the last
/// one-way trip (1.5 round trips), and [`PAUSE_OVERHEAD`].
pub fn around_qemu(rtt: Duration) -> Duration {
    rtt * 3 / 2 + PAUSE_OVERHEAD
}

/// QEMU's `downtime-limit` for a whole pause of at most `max_pause` over
/// paths whose slowest smoothed round trip is `rtt`; never below
/// [`MIN_QEMU_DOWNTIME_LIMIT`] (the pause may then exceed `max_pause`:
/// the paths alone take longer).
pub fn qemu_downtime_limit(max_pause: Duration, rtt: Duration) -> Duration {
    max_pause
        .saturating_sub(around_qemu(rtt))
        .max(MIN_QEMU_DOWNTIME_LIMIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_round_trip_and_the_commit_come_off_the_users_pause() {
        // 20 ms round trips: 30 ms of drain and last trip, 10 of commit.
        assert_eq!(qemu_downtime_limit(ms(100), ms(20)), ms(60));
        assert_eq!(qemu_downtime_limit(ms(300), ms(20)), ms(260));
        assert_eq!(qemu_downtime_limit(ms(100), ms(0)), ms(90));
    }

    #[test]
    fn slow_paths_leave_qemu_its_floor() {
        assert_eq!(
            qemu_downtime_limit(ms(100), ms(80)),
            MIN_QEMU_DOWNTIME_LIMIT
        );
        assert_eq!(qemu_downtime_limit(ms(5), ms(1)), MIN_QEMU_DOWNTIME_LIMIT);
    }
}
