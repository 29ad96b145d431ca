//! Summaries of repeated measurements: median, min, max.

use serde::Serialize;

/// Median, min and max of some samples (milliseconds, seconds or tokens per second).
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Summary {
    /// Median (mean of the middle two for an even count).
    pub median: f64,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
    /// How many samples.
    pub n: usize,
}

impl Summary {
    /// None for no samples.
    pub fn of(samples: &[f64]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 { sorted[n / 2] } else { (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0 };
        Some(Self { median, min: sorted[0], max: sorted[n - 1], n })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(samples: &[f64], expected: Option<(f64, f64, f64)>) {
        let got = Summary::of(samples).map(|s| (s.median, s.min, s.max));
        assert_eq!(got, expected, "{samples:?}");
    }

    #[test]
    fn summaries() {
        check(&[], None);
        check(&[3.0], Some((3.0, 3.0, 3.0)));
        check(&[5.0, 1.0, 3.0], Some((3.0, 1.0, 5.0)));
        check(&[4.0, 1.0, 3.0, 2.0], Some((2.5, 1.0, 4.0)));
    }
}
