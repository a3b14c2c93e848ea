//! Router noise from a counter-based generator, so a resumed run reproduces it exactly.
//!
//! The draw of (token key t, expert e) depends only on `(seed, t * E + e)`: SplitMix64's step
//! gives two uniforms, Box-Muller turns them into one standard normal.

use limoe_core::random::{splitmix64_next, unit_f64};

/// One normal draw with standard deviation `std` per token key and expert, row-major
/// [token, expert].
pub(crate) fn router_noise(seed: u64, token_keys: &[u64], experts: usize, std: f64) -> Vec<f64> {
    let key = splitmix64_next(seed);
    let e = experts as u64;
    token_keys
        .iter()
        .flat_map(|&token| (0..e).map(move |expert| token.wrapping_mul(e).wrapping_add(expert)))
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
        let keys: Vec<u64> = (0..60).collect();
        let a = router_noise(7, &keys[..50], 4, 1.0);
        assert_eq!(a, router_noise(7, &keys[..50], 4, 1.0));
        assert_ne!(a, router_noise(8, &keys[..50], 4, 1.0));
        // A longer batch extends the same stream: draws depend on (token key, expert) only.
        assert_eq!(a[..], router_noise(7, &keys, 4, 1.0)[..200]);
        // A token's draws follow its key wherever it sits.
        assert_eq!(
            router_noise(7, &[42], 4, 1.0),
            router_noise(7, &keys, 4, 1.0)[168..172]
        );
    }

    #[test]
    fn standard_normal_moments() {
        let keys: Vec<u64> = (0..20_000).collect();
        let v = router_noise(1, &keys, 2, 2.0);
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
        assert!(mean.abs() < 0.05, "mean {mean}");
        assert!((var - 4.0).abs() < 0.15, "variance {var}");
    }
}
