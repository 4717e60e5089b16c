//! Parsers for human-readable link parameters: rates (`50mbit`), durations
//! (`10ms`) and loss ratios (`0.1%`). Reused by the testbed configuration.

use std::time::Duration;

/// Errors from the unit parsers.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UnitsError {
    #[error("empty value")]
    Empty,
    #[error("invalid number in {0:?}")]
    BadNumber(String),
    #[error("unknown unit in {value:?} (expected one of: {expected})")]
    BadUnit {
        value: String,
        expected: &'static str,
    },
    #[error("value {0:?} is out of range")]
    OutOfRange(String),
}

/// Splits `"50mbit"` into `("50", "mbit")`.
fn split_number(s: &str) -> Result<(f64, String), UnitsError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(UnitsError::Empty);
    }
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(end);
    let num: String = num.chars().filter(|&c| c != '_').collect();
    let value: f64 = num
        .parse()
        .map_err(|_| UnitsError::BadNumber(s.to_string()))?;
    if !value.is_finite() || value < 0.0 {
        return Err(UnitsError::OutOfRange(s.to_string()));
    }
    Ok((value, unit.trim().to_ascii_lowercase()))
}

/// Parses a rate in bits per second: `500kbit`, `50mbit`, `1gbit`, `1.5gbit`,
/// `1000bit` or a bare number of bit/s. Decimal prefixes (1 kbit = 1000 bit).
/// `0` means unlimited. Byte units (`mbps`) are rejected as ambiguous.
pub fn parse_rate(s: &str) -> Result<u64, UnitsError> {
    let (value, unit) = split_number(s)?;
    let mult: f64 = match unit.as_str() {
        "" | "bit" | "bps" => 1.0,
        "k" | "kbit" => 1e3,
        "m" | "mbit" => 1e6,
        "g" | "gbit" => 1e9,
        "t" | "tbit" => 1e12,
        _ => {
            return Err(UnitsError::BadUnit {
                value: s.to_string(),
                expected: "bit, kbit, mbit, gbit, tbit",
            });
        }
    };
    let bps = (value * mult).round();
    if bps > u64::MAX as f64 {
        return Err(UnitsError::OutOfRange(s.to_string()));
    }
    Ok(bps as u64)
}

/// Parses a duration: `250us`, `10ms`, `1s`, `1.5s`, `100ns`, `0`.
/// A bare number other than zero is rejected (the unit is required).
pub fn parse_duration(s: &str) -> Result<Duration, UnitsError> {
    let (value, unit) = split_number(s)?;
    let nanos_per: f64 = match unit.as_str() {
        "" if value == 0.0 => 1.0,
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" | "sec" => 1e9,
        "m" | "min" => 60e9,
        _ => {
            return Err(UnitsError::BadUnit {
                value: s.to_string(),
                expected: "ns, us, ms, s, min",
            });
        }
    };
    let nanos = (value * nanos_per).round();
    if nanos > u64::MAX as f64 {
        return Err(UnitsError::OutOfRange(s.to_string()));
    }
    Ok(Duration::from_nanos(nanos as u64))
}

/// Parses a loss ratio into `0.0..=1.0`: `0.1%` gives 0.001, a bare `0.001`
/// is taken as a fraction.
pub fn parse_loss(s: &str) -> Result<f64, UnitsError> {
    let (value, unit) = split_number(s)?;
    let ratio = match unit.as_str() {
        "%" => value / 100.0,
        "" => value,
        _ => {
            return Err(UnitsError::BadUnit {
                value: s.to_string(),
                expected: "% or a bare fraction",
            });
        }
    };
    if !(0.0..=1.0).contains(&ratio) {
        return Err(UnitsError::OutOfRange(s.to_string()));
    }
    Ok(ratio)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("50mbit"), Ok(50_000_000));
        assert_eq!(parse_rate("1gbit"), Ok(1_000_000_000));
        assert_eq!(parse_rate("500kbit"), Ok(500_000));
        assert_eq!(parse_rate("1.5Gbit"), Ok(1_500_000_000));
        assert_eq!(parse_rate(" 1000 "), Ok(1000));
        assert_eq!(parse_rate("0"), Ok(0));
        assert!(matches!(
            parse_rate("50mbps"),
            Err(UnitsError::BadUnit { .. })
        ));
        assert!(matches!(parse_rate("fast"), Err(UnitsError::BadNumber(_))));
        assert_eq!(parse_rate(""), Err(UnitsError::Empty));
        assert!(parse_rate("-5mbit").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10ms"), Ok(Duration::from_millis(10)));
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("0.5ms"), Ok(Duration::from_micros(500)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0ms"), Ok(Duration::ZERO));
        assert!(matches!(
            parse_duration("10"),
            Err(UnitsError::BadUnit { .. })
        ));
        assert!(matches!(
            parse_duration("10 hours"),
            Err(UnitsError::BadUnit { .. })
        ));
    }

    #[test]
    fn losses() {
        assert_eq!(parse_loss("0%"), Ok(0.0));
        assert!((parse_loss("0.1%").unwrap_or(1.0) - 0.001).abs() < 1e-12);
        assert_eq!(parse_loss("0.25"), Ok(0.25));
        assert_eq!(parse_loss("100%"), Ok(1.0));
        assert!(matches!(parse_loss("101%"), Err(UnitsError::OutOfRange(_))));
        assert!(matches!(parse_loss("2"), Err(UnitsError::OutOfRange(_))));
        assert!(matches!(parse_loss("1x"), Err(UnitsError::BadUnit { .. })));
    }

    #[test]
    fn errors_are_readable() {
        let e = parse_rate("5 furlongs").err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("unknown unit in \"5 furlongs\" (expected one of: bit, kbit, mbit, gbit, tbit)")
        );
    }
}
