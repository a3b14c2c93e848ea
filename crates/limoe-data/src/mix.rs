//! SplitMix64's output mixer: spreads any 64-bit value over all 64 bits. Fixed forever, so
//! data drawn or split with it is reproducible across versions.

/// Mixes `z` (the SplitMix64 finalizer).
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
