//! Timing statistics and how the tables print a ratio against its target.

/// Median, minimum and maximum of timings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Summary {
    /// The median.
    pub median: f64,
    /// The smallest sample.
    pub min: f64,
    /// The largest sample.
    pub max: f64,
}

impl Summary {
    /// None for no samples.
    pub(crate) fn of(samples: &[f64]) -> Option<Summary> {
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = match n {
            0 => return None,
            _ if n % 2 == 1 => sorted[n / 2],
            _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        };
        Some(Summary {
            median,
            min: sorted[0],
            max: sorted[n - 1],
        })
    }
}

/// A ratio next to its target, e.g. `1.07 (target <= 1.15: met)`.
pub(crate) fn against_target(ratio: f64, target: f64, at_most: bool) -> String {
    let (sign, met) = if at_most {
        ("<=", ratio <= target)
    } else {
        (">=", ratio >= target)
    };
    let verdict = if met { "met" } else { "missed" };
    format!("{ratio:.2} (target {sign} {target:.2}: {verdict})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_median_min_max() {
        assert_eq!(Summary::of(&[]), None);
        let odd = Summary::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((odd.median, odd.min, odd.max), (2.0, 1.0, 3.0));
        assert_eq!(Summary::of(&[4.0, 1.0, 3.0, 2.0]).unwrap().median, 2.5);
    }

    #[test]
    fn ratios_name_their_target() {
        assert_eq!(
            against_target(1.07, 1.15, true),
            "1.07 (target <= 1.15: met)"
        );
        assert_eq!(
            against_target(1.2, 1.15, true),
            "1.20 (target <= 1.15: missed)"
        );
        assert_eq!(
            against_target(4.0, 5.0, false),
            "4.00 (target >= 5.00: missed)"
        );
    }
}
