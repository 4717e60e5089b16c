//! Summaries of repeated measurements: median, extremes and count.

use serde::{Deserialize, Serialize};

/// Median, minimum and maximum of the finite samples of one point.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Median (mean of the two middle samples for an even count); `None`
    /// without samples.
    pub median: Option<f64>,
    /// Smallest sample.
    pub min: Option<f64>,
    /// Largest sample.
    pub max: Option<f64>,
    /// Samples that went into it (non-finite ones are left out).
    pub n: u32,
}

/// Summarizes `samples`, ignoring NaN and infinite values.
pub fn summarize(samples: &[f64]) -> Summary {
    let mut v: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    };
    Summary {
        median,
        min: v.first().copied(),
        max: v.last().copied(),
        n: u32::try_from(n).unwrap_or(u32::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::summarize;

    #[test]
    fn odd_even_and_empty() {
        let s = summarize(&[3.0, 1.0, 2.0]);
        assert_eq!(
            (s.median, s.min, s.max, s.n),
            (Some(2.0), Some(1.0), Some(3.0), 3)
        );
        let s = summarize(&[4.0, 1.0, 2.0, 3.0]);
        assert_eq!(s.median, Some(2.5));
        let s = summarize(&[]);
        assert_eq!((s.median, s.min, s.max, s.n), (None, None, None, 0));
    }

    #[test]
    fn non_finite_samples_are_left_out() {
        let s = summarize(&[f64::NAN, 5.0, f64::INFINITY]);
        assert_eq!((s.median, s.n), (Some(5.0), 1));
    }
}
