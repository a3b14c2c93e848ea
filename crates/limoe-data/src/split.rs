//! Deterministic train / val / test assignment by a hash of the key.

use limoe_core::random::{mix64, unit_f64};
use limoe_core::spec::Splits;
use serde::{Deserialize, Serialize};

/// Which part of a dataset a pair belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// Training pairs.
    Train,
    /// Validation pairs.
    Val,
    /// Held-out test pairs.
    Test,
}

impl Split {
    /// All splits.
    pub const ALL: [Split; 3] = [Split::Train, Split::Val, Split::Test];

    /// The split's name, as used in file names.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }

    /// The split of `key`: the same key always lands in the same split, whatever else is in
    /// the dataset (FNV-1a of the key, finished with SplitMix64's mixer so that keys that
    /// differ only in their last characters spread evenly, then mapped to [0, 1)).
    pub fn of_key(key: &str, fractions: &Splits) -> Split {
        let fnv = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        let u = unit_f64(mix64(fnv));
        if u < fractions.val {
            Split::Val
        } else if u < fractions.val + fractions.test {
            Split::Test
        } else {
            Split::Train
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_are_stable_and_near_their_fractions() {
        let fractions = Splits {
            val: 0.1,
            test: 0.2,
        };
        for prefix in ["pair-", "synthetic-0-", "x"] {
            let mut counts = [0usize; 3];
            for i in 0..10_000 {
                let key = format!("{prefix}{i}");
                let split = Split::of_key(&key, &fractions);
                assert_eq!(split, Split::of_key(&key, &fractions));
                counts[split as usize] += 1;
            }
            let [train, val, test] = counts;
            // Binomial standard deviations are 30-46 rows; allow about four.
            assert!((6820..7180).contains(&train), "{prefix}: {counts:?}");
            assert!((880..1120).contains(&val), "{prefix}: {counts:?}");
            assert!((1840..2160).contains(&test), "{prefix}: {counts:?}");
        }
    }
}
