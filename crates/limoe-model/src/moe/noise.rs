//! Router noise from a counter-based generator, so a resumed run reproduces it exactly.
//!
//! The draw of (token key t, expert e) depends only on `(seed, t * E + e)`: SplitMix64's step
//! gives two uniforms, Box-Muller turns them into one standard normal.

use limoe_core::random::{splitmix64_next, unit_f64};
use rayon::prelude::*;

/// Keys drawn per parallel task: below that, splitting costs more than it saves.
const KEYS_PER_TASK: usize = 256;

/// One normal draw with standard deviation `std` per token key and expert, row-major
/// [token, expert]. Drawn in parallel: each value depends on its key alone.
pub(crate) fn router_noise(seed: u64, token_keys: &[u64], experts: usize, std: f64) -> Vec<f64> {
    let key = splitmix64_next(seed);
    let e = experts as u64;
    let mut draws = vec![0.0; token_keys.len() * experts];
    draws
        .par_chunks_mut(experts)
        .zip(token_keys.par_iter())
        .with_min_len(KEYS_PER_TASK)
        .for_each(|(row, &token)| {
            for (expert, draw) in (0..e).zip(row) {
                let base = splitmix64_next(key ^ token.wrapping_mul(e).wrapping_add(expert));
                let u1 = 1.0 - unit_f64(base); // (0, 1]: the log is finite
                let u2 = unit_f64(splitmix64_next(base ^ 0xD1B5_4A32_D192_ED03));
                *draw = std * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
            }
        });
    draws
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
