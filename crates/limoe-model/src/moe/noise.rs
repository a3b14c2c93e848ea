//! Router noise from a counter-based generator, so a resumed run reproduces it exactly.
//!
//! The draw of (token t, expert e) depends only on `(seed, t * E + e)`: SplitMix64's step
//! gives two uniforms, Box-Muller turns them into one standard normal.

use limoe_core::random::{splitmix64_next, unit_f64};

/// `tokens * experts` normal draws with standard deviation `std`, row-major [token, expert].
pub(crate) fn router_noise(seed: u64, tokens: usize, experts: usize, std: f64) -> Vec<f64> {
    let key = splitmix64_next(seed);
    (0..(tokens * experts) as u64)
        .map(|counter| {
            let base = splitmix64_next(key ^ counter);
            let u1 = 1.0 - unit_f64(base); // (0, 1]: the log is finite
            let u2 = unit_f64(splitmix64_next(base ^ 0xD1B5_4A32_D192_ED03));
            std * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::router_noise;

    #[test]
    fn keyed_by_seed_and_position() {
        let a = router_noise(7, 50, 4, 1.0);
        assert_eq!(a, router_noise(7, 50, 4, 1.0));
        assert_ne!(a, router_noise(8, 50, 4, 1.0));
        // A longer batch extends the same stream: draws depend on (token, expert) only.
        assert_eq!(a[..], router_noise(7, 60, 4, 1.0)[..200]);
    }

    #[test]
    fn standard_normal_moments() {
        let v = router_noise(1, 20_000, 2, 2.0);
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
        assert!(mean.abs() < 0.05, "mean {mean}");
        assert!((var - 4.0).abs() < 0.15, "variance {var}");
    }
}
