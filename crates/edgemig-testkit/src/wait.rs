//! Polling for readiness instead of sleeping a fixed time.

use std::time::{Duration, Instant};

/// Polls `check` every 100 ms until it returns `Some`, or fails after
/// `limit` with `what` in the message. The limit is a safety net against a
/// hang, not a performance assertion.
pub fn wait_until<T>(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> Result<T, String> {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return Ok(v);
        }
        if start.elapsed() > limit {
            return Err(format!("gave up waiting for {what} after {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
