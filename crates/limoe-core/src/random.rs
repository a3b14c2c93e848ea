//! SplitMix64 (Steele, Lea and Flood 2014), the one seeded random source of limoe: sweeps'
//! samples, datasets, shuffles, evaluation shots and parameter initialisation all draw from
//! it, and its outputs are fixed forever, so a seed reproduces the same numbers on every
//! machine and every limoe version.

/// The golden-ratio increment SplitMix64 adds to its state per draw (also a good odd
/// multiplier for spreading small integers over 64 bits).
pub const GOLDEN_GAMMA: u64 = 0x9E3779B97F4A7C15;

/// SplitMix64's output finalizer: a bijective mixer that spreads any 64-bit value over all
/// 64 bits (what a one-shot hash of an integer wants).
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
    z ^ (z >> 31)
}

/// The draw a SplitMix64 stream in state `state` gives next, without keeping a stream:
/// `mix64(state + GOLDEN_GAMMA)`, for counter-based draws keyed by any integer.
pub fn splitmix64_next(state: u64) -> u64 {
    mix64(state.wrapping_add(GOLDEN_GAMMA))
}

/// The top 53 bits of `bits` as a float uniform in [0, 1) (every such float equally likely).
pub fn unit_f64(bits: u64) -> f64 {
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// A SplitMix64 stream: tiny, fast, and its sequence never changes.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A stream starting from `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    /// The state, to restart the stream where it is with [`SplitMix64::new`].
    pub fn state(&self) -> u64 {
        self.state
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let draw = splitmix64_next(self.state);
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        draw
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        unit_f64(self.next_u64())
    }

    /// Uniform in [0, 1) with 24 random bits.
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in [low, high] (as f32).
    pub fn between(&mut self, low: f32, high: f32) -> f32 {
        low + (high - low) * self.next_f32()
    }

    /// Uniform in [0, n) for n >= 1 by multiply-shift (the bias is below 2^-64 * n).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// In [0, n) for n >= 1 as the next draw modulo `n`: slightly biased where `n` is not a
    /// power of two, and what datasets' draws and shuffles are fixed to.
    pub fn below_modulo(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Shuffles `items` in place (Fisher-Yates, indices drawn with [`SplitMix64::below`]).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The values below were computed by the four copies this module replaced (in
    // limoe-core's sweeps, limoe-data, limoe-train's evaluation and limoe-model); they pin
    // every function so that no seed's numbers ever change.

    #[test]
    fn mix64_is_the_finalizer() {
        assert_eq!(mix64(0), 0);
        assert_eq!(mix64(1), 0x5692_161d_100b_05e5);
        assert_eq!(mix64(42), 0xa759_ea27_d472_7622);
    }

    #[test]
    fn splitmix64_next_is_one_stream_step() {
        assert_eq!(splitmix64_next(0), 0xe220_a839_7b1d_cdaf);
        assert_eq!(splitmix64_next(1), 0x910a_2dec_8902_5cc1);
        assert_eq!(splitmix64_next(42), 0xbdd7_3226_2feb_6e95);
    }

    #[test]
    fn unit_f64_keeps_the_top_53_bits() {
        assert_eq!(unit_f64(0), 0.0);
        assert_eq!(unit_f64(u64::MAX), 1.0 - 2f64.powi(-53));
        assert_eq!(unit_f64(1 << 63), 0.5);
    }

    #[test]
    fn the_stream_draws_are_fixed() {
        let mut rng = SplitMix64::new(42);
        assert_eq!(
            [rng.next_u64(), rng.next_u64(), rng.next_u64()],
            [
                0xbdd7_3226_2feb_6e95,
                0x28ef_e333_b266_f103,
                0x4752_6757_130f_9f52
            ]
        );
        assert_eq!(
            rng.state(),
            42u64.wrapping_add(3u64.wrapping_mul(GOLDEN_GAMMA))
        );
        let mut rng = SplitMix64::new(42);
        assert_eq!(
            [rng.next_f64(), rng.next_f64()],
            [0.7415648787718233, 0.1599103928769201]
        );
        let mut rng = SplitMix64::new(42);
        assert_eq!(
            [rng.next_f32(), rng.next_f32(), rng.between(2.0, 5.0)],
            [0.74156487, 0.15991038, 2.8358033]
        );
        let mut rng = SplitMix64::new(42);
        assert_eq!(
            [rng.below(10), rng.below(1000), rng.below(u64::MAX)],
            [7, 159, 5139283748462763857]
        );
        let mut rng = SplitMix64::new(42);
        assert_eq!(
            [
                rng.below_modulo(10),
                rng.below_modulo(7),
                rng.below_modulo(1000)
            ],
            [3, 5, 858]
        );
        let mut items: Vec<u32> = (0..10).collect();
        SplitMix64::new(42).shuffle(&mut items);
        assert_eq!(items, [8, 3, 6, 5, 4, 0, 9, 2, 1, 7]);
    }
}
