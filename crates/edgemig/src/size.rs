//! Parsing sizes given on the command line (`256M`, `1G`, `512MiB`).

/// A size that could not be understood.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("Invalid size {0:?}: use a number with a unit, e.g. 256M, 1G, 512MiB")]
pub struct SizeError(pub String);

/// Parses a size into MiB. A bare number is MiB; units K, M, G, T (with
/// optional `i`/`iB`/`B`) are powers of 1024. Sizes must be whole MiB.
pub fn parse_mib(text: &str) -> Result<u64, SizeError> {
    let err = || SizeError(text.to_string());
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| err())?;
    let unit = unit.trim().to_ascii_uppercase();
    let unit = unit.trim_end_matches('B').trim_end_matches('I');
    let kib = match unit {
        "K" => n,
        "" | "M" => n.checked_mul(1024).ok_or_else(err)?,
        "G" => n.checked_mul(1024 * 1024).ok_or_else(err)?,
        "T" => n.checked_mul(1024 * 1024 * 1024).ok_or_else(err)?,
        _ => return Err(err()),
    };
    if kib == 0 || kib % 1024 != 0 {
        return Err(err());
    }
    Ok(kib / 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse_mib("256M"), Ok(256));
        assert_eq!(parse_mib("256"), Ok(256));
        assert_eq!(parse_mib("1G"), Ok(1024));
        assert_eq!(parse_mib("2GiB"), Ok(2048));
        assert_eq!(parse_mib("512MiB"), Ok(512));
        assert_eq!(parse_mib("2048K"), Ok(2));
        for bad in [
            "",
            "M",
            "1.5G",
            "-1M",
            "12X",
            "0",
            "100K",
            "99999999999999999999T",
        ] {
            assert!(parse_mib(bad).is_err(), "{bad}");
        }
    }
}
