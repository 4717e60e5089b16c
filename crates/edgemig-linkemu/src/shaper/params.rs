//! Per-direction link parameters and their derived values (serialization
//! time, default queue limit).

use std::time::Duration;

use serde::Serialize;

/// Smallest default queue limit.
pub const MIN_QUEUE_BYTES: u64 = 64 * 1024;
/// Rate assumed for the bandwidth-delay product of an unlimited link.
const UNLIMITED_RATE_FOR_BDP: u64 = 1_000_000_000;

/// Errors in link parameters.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ParamsError {
    #[error("loss must be within 0..=1, got {0}")]
    Loss(f64),
    #[error("queue limit must be positive")]
    ZeroQueue,
}

/// Emulated properties of one direction of a path.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkParams {
    /// Bits per second on the wire; 0 = unlimited.
    pub rate_bps: u64,
    /// One-way propagation delay added to every frame.
    pub delay: Duration,
    /// Uniform jitter: each frame gets `delay ± jitter` (never reordering).
    pub jitter: Duration,
    /// Random loss probability in `0..=1`.
    pub loss: f64,
    /// Bytes held at most (backlog + frames in flight); `None` = 2 × BDP,
    /// at least [`MIN_QUEUE_BYTES`].
    pub queue_limit_bytes: Option<u64>,
    /// Link up; when down every frame is dropped.
    pub up: bool,
}

impl Default for LinkParams {
    fn default() -> Self {
        Self {
            rate_bps: 0,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            loss: 0.0,
            queue_limit_bytes: None,
            up: true,
        }
    }
}

/// JSON view of [`LinkParams`] (as reported on the control socket).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ParamsView {
    pub rate_bps: u64,
    pub delay_us: u64,
    pub jitter_us: u64,
    pub loss: f64,
    pub queue_limit_bytes: u64,
    pub queue_auto: bool,
    pub up: bool,
}

impl LinkParams {
    /// Checks value ranges.
    pub fn validate(&self) -> Result<(), ParamsError> {
        if !(0.0..=1.0).contains(&self.loss) {
            return Err(ParamsError::Loss(self.loss));
        }
        if self.queue_limit_bytes == Some(0) {
            return Err(ParamsError::ZeroQueue);
        }
        Ok(())
    }

    /// Bandwidth-delay product in bytes (delay + jitter).
    pub fn bdp_bytes(&self) -> u64 {
        let rate = if self.rate_bps == 0 {
            UNLIMITED_RATE_FOR_BDP
        } else {
            self.rate_bps
        };
        let nanos = (self.delay + self.jitter).as_nanos();
        let bytes = u128::from(rate) * nanos / 8 / 1_000_000_000;
        u64::try_from(bytes).unwrap_or(u64::MAX)
    }

    /// Queue limit in force: explicit, or max(2 × BDP, [`MIN_QUEUE_BYTES`]).
    pub fn effective_queue_limit(&self) -> u64 {
        self.queue_limit_bytes
            .unwrap_or_else(|| self.bdp_bytes().saturating_mul(2).max(MIN_QUEUE_BYTES))
    }

    /// Time to put `len` bytes on the wire at `rate_bps`.
    pub fn serialization(&self, len: usize) -> Duration {
        if self.rate_bps == 0 {
            return Duration::ZERO;
        }
        let nanos = (len as u128) * 8 * 1_000_000_000 / u128::from(self.rate_bps);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// Reportable view.
    pub fn view(&self) -> ParamsView {
        ParamsView {
            rate_bps: self.rate_bps,
            delay_us: u64::try_from(self.delay.as_micros()).unwrap_or(u64::MAX),
            jitter_us: u64::try_from(self.jitter.as_micros()).unwrap_or(u64::MAX),
            loss: self.loss,
            queue_limit_bytes: self.effective_queue_limit(),
            queue_auto: self.queue_limit_bytes.is_none(),
            up: self.up,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_queue_is_two_bdp() {
        let p = LinkParams {
            rate_bps: 100_000_000,
            delay: Duration::from_millis(20),
            ..LinkParams::default()
        };
        assert_eq!(p.bdp_bytes(), 250_000);
        assert_eq!(p.effective_queue_limit(), 500_000);
        let small = LinkParams {
            rate_bps: 1_000_000,
            ..LinkParams::default()
        };
        assert_eq!(small.effective_queue_limit(), MIN_QUEUE_BYTES);
    }

    #[test]
    fn serialization_time() {
        let p = LinkParams {
            rate_bps: 8_000_000,
            ..LinkParams::default()
        };
        assert_eq!(p.serialization(1000), Duration::from_millis(1));
        assert_eq!(LinkParams::default().serialization(1000), Duration::ZERO);
    }

    #[test]
    fn validation() {
        let bad = LinkParams {
            loss: 1.5,
            ..LinkParams::default()
        };
        assert_eq!(bad.validate(), Err(ParamsError::Loss(1.5)));
        assert!(LinkParams::default().validate().is_ok());
    }
}
