//! Tests for [`super`]: CLI spellings of gains and durations.

use super::*;

#[test]
fn gains_as_percent_or_fraction() {
    assert_eq!(parse_gain("30%"), Ok(0.3));
    assert_eq!(parse_gain(" 12.5 % "), Ok(0.125));
    assert_eq!(parse_gain("0.3"), Ok(0.3));
    assert_eq!(
        parse_gain("-5%"),
        Ok(-0.05),
        "range is checked by the policy"
    );
    for bad in ["", "%", "abc", "30%%", "nan", "inf%"] {
        assert_eq!(parse_gain(bad), Err(UnitsError::Gain(bad.into())), "{bad}");
    }
}

#[test]
fn durations_need_a_unit() {
    assert_eq!(parse_duration_ms("20s"), Ok(20_000));
    assert_eq!(parse_duration_ms("500ms"), Ok(500));
    assert_eq!(parse_duration_ms("1.5s"), Ok(1500));
    assert_eq!(parse_duration_ms("2m"), Ok(120_000));
    assert_eq!(parse_duration_ms("1H"), Ok(3_600_000));
    assert_eq!(parse_duration_ms("0s"), Ok(0));
    for bad in ["20", "", "s", "-1s", "10 parsecs", "1e400s"] {
        assert_eq!(
            parse_duration_ms(bad),
            Err(UnitsError::Duration(bad.into())),
            "{bad}"
        );
    }
}

#[test]
fn format_reads_back() {
    for ms in [
        0, 1, 999, 1000, 20_000, 60_000, 90_000, 600_000, 3_600_000, 5_400_000,
    ] {
        let s = format_duration_ms(ms);
        assert_eq!(parse_duration_ms(&s), Ok(ms), "{s}");
    }
    assert_eq!(format_duration_ms(20_000), "20s");
    assert_eq!(format_duration_ms(600_000), "10m");
    assert_eq!(format_duration_ms(1500), "1500ms");
}
