//! Rate limit for log lines a guest can trigger at will (one per packet it
//! sends): at most `burst` lines per `period`; the first line of a later
//! period tells how many were left out.

use std::time::{Duration, Instant};

/// A fixed-window limiter for one kind of log line.
#[derive(Debug)]
pub struct RateLimit {
    burst: u32,
    period: Duration,
    window: Option<Instant>,
    used: u32,
    suppressed: u64,
}

impl RateLimit {
    /// At most `burst` lines per `period`.
    pub const fn new(burst: u32, period: Duration) -> Self {
        Self {
            burst,
            period,
            window: None,
            used: 0,
            suppressed: 0,
        }
    }

    /// Whether a line may be logged at `now`: `Some(n)` with the number of
    /// lines suppressed before it, `None` to drop this one.
    pub fn check(&mut self, now: Instant) -> Option<u64> {
        let fresh = self
            .window
            .is_none_or(|start| now.saturating_duration_since(start) >= self.period);
        if fresh {
            self.window = Some(now);
            self.used = 0;
        }
        if self.used < self.burst {
            self.used += 1;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed = self.suppressed.saturating_add(1);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_drops_then_reports() {
        let t0 = Instant::now();
        let mut limit = RateLimit::new(2, Duration::from_secs(10));
        assert_eq!(limit.check(t0), Some(0));
        assert_eq!(limit.check(t0), Some(0));
        for _ in 0..5 {
            assert_eq!(limit.check(t0 + Duration::from_secs(9)), None);
        }
        assert_eq!(limit.check(t0 + Duration::from_secs(10)), Some(5));
        assert_eq!(limit.check(t0 + Duration::from_secs(11)), Some(0));
        assert_eq!(limit.check(t0 + Duration::from_secs(12)), None);
        assert_eq!(limit.check(t0 + Duration::from_secs(30)), Some(1));
    }

    #[test]
    fn a_clock_going_backwards_does_not_open_a_window() {
        let t0 = Instant::now() + Duration::from_secs(100);
        let mut limit = RateLimit::new(1, Duration::from_secs(10));
        assert_eq!(limit.check(t0), Some(0));
        assert_eq!(limit.check(t0 - Duration::from_secs(50)), None);
    }
}
