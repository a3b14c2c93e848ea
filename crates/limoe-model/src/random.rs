//! Counter-based random numbers for parameter initialisation (reproducible from a seed), on
//! [`limoe_core::random`]'s SplitMix64.

use limoe_core::random::{splitmix64_next, unit_f64};

/// FNV-1a of a name, mixed: a stable 64-bit id for a parameter name.
pub fn hash_name(name: &str) -> u64 {
    let hash = name.bytes().fold(0xCBF2_9CE4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
    });
    splitmix64_next(hash)
}

/// A stream of uniform and normal draws.
pub struct Stream {
    state: u64,
}

impl Stream {
    /// A stream starting from `seed`.
    pub fn new(seed: u64) -> Stream {
        Stream { state: seed }
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        self.state = self.state.wrapping_add(1);
        unit_f64(splitmix64_next(self.state))
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values computed before these functions moved onto `limoe_core::random`.
    #[test]
    fn draws_are_fixed() {
        assert_eq!(hash_name("encoder.block0.mlp.w1"), 0x597b_89be_9ff9_e322);
        let mut stream = Stream::new(42);
        assert_eq!(
            [stream.uniform(), stream.uniform(), stream.normal()],
            [0.7281787732893573, 0.9815240544645374, -0.3261976619970595]
        );
    }
}
