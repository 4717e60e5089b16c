//! Axis ranges computed from the data, and tick label text.

/// Fraction of the data span added on each side of the x axis.
const X_MARGIN: f64 = 0.05;
/// Fraction of the data span added above the highest y value (room for the
/// legend and bar value labels).
const Y_HEADROOM: f64 = 0.22;

/// A linear axis range covering `values` (finite, non-empty) with a margin.
pub(crate) fn linear(values: impl IntoIterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = min_max(values);
    if hi > lo {
        let pad = (hi - lo) * X_MARGIN;
        (lo - pad, hi + pad)
    } else {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        (lo - pad, hi + pad)
    }
}

/// A logarithmic axis range covering `values` (finite, > 0, non-empty) with
/// a multiplicative margin.
pub(crate) fn logarithmic(values: impl IntoIterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = min_max(values);
    if hi > lo {
        let factor = (hi / lo).powf(X_MARGIN);
        (lo / factor, hi * factor)
    } else {
        (lo / 2.0, hi * 2.0)
    }
}

/// A y range that includes 0 and all `values` (finite, non-empty), with
/// headroom above.
pub(crate) fn from_zero(values: impl IntoIterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = min_max(values);
    let (lo, hi) = (lo.min(0.0), hi.max(0.0));
    if hi > lo {
        let span = hi - lo;
        let bottom = if lo < 0.0 { lo - span * X_MARGIN } else { 0.0 };
        (bottom, hi + span * Y_HEADROOM)
    } else {
        (0.0, 1.0)
    }
}

fn min_max(values: impl IntoIterator<Item = f64>) -> (f64, f64) {
    values
        .into_iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        })
}

/// Tick label text: no trailing zeros, no "-0", thousands kept plain.
pub(crate) fn tick(v: f64) -> String {
    if v == 0.0 {
        return "0".to_string();
    }
    let a = v.abs();
    let text = if !(1e-3..1e7).contains(&a) {
        format!("{v:e}")
    } else {
        let decimals = if a >= 100.0 {
            0
        } else if a >= 1.0 {
            2
        } else {
            4
        };
        let s = format!("{v:.decimals$}");
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    };
    if text == "-0" { "0".to_string() } else { text }
}

/// Value label on top of a bar: three significant digits.
pub(crate) fn value_label(v: f64) -> String {
    let a = v.abs();
    let decimals = if a >= 100.0 || a == 0.0 {
        0
    } else if a >= 10.0 {
        1
    } else if a >= 1.0 {
        2
    } else {
        3
    };
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_adds_margin_and_widens_single_values() {
        assert_eq!(linear([0.0, 100.0]), (-5.0, 105.0));
        let (lo, hi) = linear([4.0]);
        assert!(lo < 4.0 && hi > 4.0);
        assert_eq!(linear([0.0]), (-1.0, 1.0));
    }

    #[test]
    fn logarithmic_stays_positive() {
        let (lo, hi) = logarithmic([10.0, 1000.0]);
        assert!(lo > 0.0 && lo < 10.0 && hi > 1000.0);
        assert_eq!(logarithmic([5.0]), (2.5, 10.0));
    }

    #[test]
    fn from_zero_starts_at_zero_and_handles_negatives() {
        let (lo, hi) = from_zero([3.0, 10.0]);
        assert_eq!(lo, 0.0);
        assert!(hi > 10.0);
        let (lo, hi) = from_zero([-2.0, 10.0]);
        assert!(lo < -2.0 && hi > 10.0);
        assert_eq!(from_zero([0.0, 0.0]), (0.0, 1.0));
    }

    #[test]
    fn ticks_are_short() {
        assert_eq!(tick(100.0), "100");
        assert_eq!(tick(2.5), "2.5");
        assert_eq!(tick(0.25), "0.25");
        assert_eq!(tick(-0.0), "0");
        assert_eq!(tick(1.0e9), "1e9");
        assert_eq!(value_label(12.345), "12.3");
        assert_eq!(value_label(0.5), "0.5");
        assert_eq!(value_label(9.8), "9.8");
        assert_eq!(value_label(0.1234), "0.123");
    }
}
