//! Rates, delays and loss ratios as written in testbed configs and on the
//! command line: `50mbit`, `10ms`, `0.1%`.

use std::time::Duration;

/// A value that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    /// Bad rate.
    #[error("Invalid rate {0:?}: use e.g. 500kbit, 50mbit, 1gbit")]
    Rate(String),
    /// Bad duration.
    #[error("Invalid delay {0:?}: use e.g. 250us, 10ms, 1s")]
    Duration(String),
    /// Bad loss.
    #[error("Invalid loss {0:?}: use a percentage from 0% to 100%, e.g. 0.1%")]
    Loss(String),
}

fn split_number(text: &str) -> Option<(f64, &str)> {
    let t = text.trim();
    let end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(end);
    let n: f64 = num.parse().ok()?;
    n.is_finite().then_some((n, unit.trim()))
}

/// Parses a rate into bits per second (`kbit`, `mbit`, `gbit`, `bit`; powers of 1000).
pub fn parse_rate(text: &str) -> Result<u64, UnitError> {
    let err = || UnitError::Rate(text.to_string());
    let (n, unit) = split_number(text).ok_or_else(err)?;
    let scale = match unit.to_ascii_lowercase().as_str() {
        "bit" | "bps" => 1.0,
        "kbit" => 1e3,
        "mbit" => 1e6,
        "gbit" => 1e9,
        _ => return Err(err()),
    };
    let bps = n * scale;
    if bps < 1000.0 || bps > 100e9 {
        return Err(err());
    }
    Ok(bps as u64)
}

/// Parses a delay (`us`, `ms`, `s`).
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let err = || UnitError::Duration(text.to_string());
    let (n, unit) = split_number(text).ok_or_else(err)?;
    let secs = match unit {
        "us" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        _ => return Err(err()),
    };
    if secs > 10.0 {
        return Err(err());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses a loss percentage into a ratio in `[0, 1]`.
pub fn parse_loss(text: &str) -> Result<f64, UnitError> {
    let err = || UnitError::Loss(text.to_string());
    let (n, unit) = split_number(text).ok_or_else(err)?;
    if unit != "%" || n > 100.0 {
        return Err(err());
    }
    Ok(n / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("50mbit"), Ok(50_000_000));
        assert_eq!(parse_rate("1gbit"), Ok(1_000_000_000));
        assert_eq!(parse_rate("500kbit"), Ok(500_000));
        assert_eq!(parse_rate("2.5Mbit"), Ok(2_500_000));
        for bad in ["", "50", "50mb", "-1mbit", "fastmbit", "0mbit"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10ms"), Ok(Duration::from_millis(10)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("0ms"), Ok(Duration::ZERO));
        for bad in ["10", "10 minutes", "ms", "11s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn losses() {
        assert_eq!(parse_loss("0%"), Ok(0.0));
        assert_eq!(parse_loss("0.1%"), Ok(0.001));
        for bad in ["0.1", "101%", "x%"] {
            assert!(parse_loss(bad).is_err(), "{bad}");
        }
    }
}
