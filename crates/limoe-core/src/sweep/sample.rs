//! Sampling for `sweep.random`: a [`SplitMix64`] stream, so that the same `random.seed` gives
//! the same trials on every machine and every limoe version.

use crate::random::SplitMix64;
use crate::spec::{Distribution, Node, Origin, RandomSweep, Value};

/// `random.trials` samples, each a value per parameter in the order of `random.params`.
pub(super) fn sample(random: &RandomSweep) -> Vec<Vec<(String, Node)>> {
    let mut rng = SplitMix64::new(random.seed);
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
