//! Sampling for `sweep.random`: a SplitMix64 stream, so that the same `random.seed` gives
//! the same trials on every machine and every limoe version.

use crate::spec::{Distribution, Node, Origin, RandomSweep, Value};

/// SplitMix64 (Steele, Lea and Flood 2014): tiny, fast, and fixed forever.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 random bits.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [0, n) for n >= 1 (multiply-shift; the bias is below 2^-64 * n).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// `random.trials` samples, each a value per parameter in the order of `random.params`.
pub(super) fn sample(random: &RandomSweep) -> Vec<Vec<(String, Node)>> {
    let mut rng = SplitMix64(random.seed);
    (0..random.trials)
        .map(|_| {
            random
                .params
                .iter()
                .map(|(path, dist)| (path.clone(), draw(dist, &mut rng)))
                .collect()
        })
        .collect()
}

fn draw(dist: &Distribution, rng: &mut SplitMix64) -> Node {
    let value = match dist {
        Distribution::Choice(values) => {
            let i = rng.below(values.len() as u64) as usize;
            return values[i].clone();
        }
        Distribution::Uniform([lo, hi]) => Value::Float(lo + (hi - lo) * rng.next_f64()),
        Distribution::LogUniform([lo, hi]) => {
            let (a, b) = (lo.ln(), hi.ln());
            // exp can round up to `hi` itself; keep the interval half-open.
            Value::Float(
                (a + (b - a) * rng.next_f64())
                    .exp()
                    .clamp(*lo, *hi)
                    .min(hi.next_down()),
            )
        }
        Distribution::IntUniform([lo, hi]) => {
            let span = hi.abs_diff(*lo).saturating_add(1);
            Value::Int(lo.wrapping_add_unsigned(rng.below(span)))
        }
    };
    Node::new(value, Origin::Default)
}
