//! The CLI spellings of the policy's quantities: gains (`30%`, `0.3`) and
//! durations (`20s`, `500ms`, `2m`, `1h`).
//!
//! Durations always need a unit: a bare `20` is rejected rather than
//! guessed as seconds or milliseconds.

/// Errors from parsing a gain or a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitsError {
    /// Not a number, a percentage or a fraction.
    #[error("Bad gain {0:?} (expected a percentage like \"30%\" or a fraction like \"0.3\")")]
    Gain(String),
    /// Not a number followed by `ms`, `s`, `m` or `h`.
    #[error(
        "Bad duration {0:?} (expected a number with a unit: \"500ms\", \"20s\", \"2m\", \"1h\")"
    )]
    Duration(String),
}

/// Parse a gain: `"30%"` or `"0.3"` both give `0.3`. The range is not
/// checked here (see [`crate::FollowPolicy::validate`]).
pub fn parse_gain(s: &str) -> Result<f64, UnitsError> {
    let t = s.trim();
    let (num, scale) = match t.strip_suffix('%') {
        Some(n) => (n.trim(), 100.0),
        None => (t, 1.0),
    };
    match num.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v / scale),
        _ => Err(UnitsError::Gain(s.to_owned())),
    }
}

/// Parse a duration with a unit into whole milliseconds. Fractions are
/// allowed (`"1.5s"` is 1500); the result is rounded to the millisecond.
pub fn parse_duration_ms(s: &str) -> Result<u64, UnitsError> {
    let t = s.trim().to_ascii_lowercase();
    let err = || UnitsError::Duration(s.to_owned());
    // "ms" before "s" and "m": the longest suffix wins.
    let (num, ms_per_unit) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1e3)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60e3)
    } else if let Some(n) = t.strip_suffix('h') {
        (n, 3600e3)
    } else {
        return Err(err());
    };
    let v: f64 = num.trim().parse().map_err(|_| err())?;
    let ms = (v * ms_per_unit).round();
    if !ms.is_finite() || ms < 0.0 || ms > u64::MAX as f64 {
        return Err(err());
    }
    Ok(ms as u64)
}

/// Format milliseconds the way [`parse_duration_ms`] reads them back:
/// the largest unit that divides the value exactly.
pub fn format_duration_ms(ms: u64) -> String {
    if ms != 0 && ms.is_multiple_of(3_600_000) {
        format!("{}h", ms / 3_600_000)
    } else if ms != 0 && ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
#[path = "units_tests.rs"]
mod tests;
