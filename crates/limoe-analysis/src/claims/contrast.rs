//! The verdict rule: an effect over seeds against its standard error.

use serde::Serialize;

/// What the seeds say about a claim or one comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The effect exceeds twice its standard error in the paper's direction.
    Reproduced,
    /// The effect plus twice its standard error stays below the smallest effect that counts.
    NotReproduced,
    /// Neither: the seeds cannot tell, or a setting has fewer than two finished seeds.
    Inconclusive,
    /// The sweep has not the settings the comparison needs.
    NotTested,
}

impl Verdict {
    /// The verdict in words.
    pub fn word(self) -> &'static str {
        match self {
            Verdict::Reproduced => "reproduced",
            Verdict::NotReproduced => "not reproduced",
            Verdict::Inconclusive => "inconclusive",
            Verdict::NotTested => "not tested",
        }
    }

    /// A claim's verdict from its comparisons': reproduced when all are, not reproduced
    /// when any is not, not tested when any is not tested, else inconclusive.
    pub fn of_all(verdicts: impl IntoIterator<Item = Verdict>) -> Verdict {
        let verdicts: Vec<Verdict> = verdicts.into_iter().collect();
        let any = |v: Verdict| verdicts.contains(&v);
        if verdicts.is_empty() || any(Verdict::NotTested) {
            Verdict::NotTested
        } else if any(Verdict::NotReproduced) {
            Verdict::NotReproduced
        } else if verdicts.iter().all(|&v| v == Verdict::Reproduced) {
            Verdict::Reproduced
        } else {
            Verdict::Inconclusive
        }
    }
}

/// The rule as the report states it.
pub const VERDICT_RULE: &str = "Each comparison's effect is a difference of setting means \
    over seeds, signed so that the paper's claim makes it positive; its standard error is \
    sqrt(sum of c^2 s^2 / n) over the settings it combines (c its coefficient, s the sample \
    standard deviation over the n finished seeds). A comparison is reproduced when the effect \
    exceeds twice its standard error; not reproduced when the effect plus twice its standard \
    error stays below the smallest effect that would count (0, so the opposite of the claim \
    holds, unless the comparison states another); inconclusive otherwise, or when a setting \
    has fewer than 2 finished seeds. A claim is reproduced when all its comparisons are, not \
    reproduced when any is not.";

/// A signed combination of setting means: `sum c * mean(values)`.
#[derive(Clone, Debug, Default)]
pub struct Contrast {
    terms: Vec<(f64, Vec<f64>)>,
    smallest: f64,
}

/// A contrast's effect, its standard error and verdict.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Judged {
    /// The effect, positive in the paper's direction.
    pub effect: Option<f64>,
    /// Its standard error over seeds.
    pub se: Option<f64>,
    /// The fewest finished seeds among the settings combined.
    pub seeds: usize,
    /// What the rule makes of it.
    pub verdict: Verdict,
}

impl Contrast {
    /// `c * mean(values)` added to the effect.
    pub fn plus(mut self, c: f64, values: Vec<f64>) -> Contrast {
        self.terms.push((c, values));
        self
    }

    /// The smallest effect that would count as the claim (0 unless set).
    pub fn smallest(mut self, effect: f64) -> Contrast {
        self.smallest = effect;
        self
    }

    /// Applies [`VERDICT_RULE`].
    pub fn judge(&self) -> Judged {
        let seeds = self.terms.iter().map(|(_, v)| v.len()).min().unwrap_or(0);
        if seeds == 0 {
            return Judged {
                effect: None,
                se: None,
                seeds,
                verdict: Verdict::Inconclusive,
            };
        }
        let effect: f64 = self.terms.iter().map(|(c, v)| c * mean(v)).sum();
        let se = (seeds >= 2).then(|| {
            (self.terms.iter())
                .map(|(c, v)| c * c * sample_variance(v) / v.len() as f64)
                .sum::<f64>()
                .sqrt()
        });
        let verdict = match se {
            None => Verdict::Inconclusive,
            Some(se) if effect > 2.0 * se => Verdict::Reproduced,
            Some(se) if effect + 2.0 * se < self.smallest => Verdict::NotReproduced,
            Some(_) => Verdict::Inconclusive,
        };
        Judged {
            effect: Some(effect),
            se,
            seeds,
            verdict,
        }
    }
}

/// The mean of a non-empty slice.
pub fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// The sample variance (n - 1), 0 for fewer than two values.
pub fn sample_variance(values: &[f64]) -> f64 {
    if values.len() < 2 {
        return 0.0;
    }
    let m = mean(values);
    values.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (values.len() - 1) as f64
}

#[cfg(test)]
mod tests {
    use super::{Contrast, Verdict};

    #[test]
    fn the_rule_weighs_the_effect_against_twice_its_standard_error() {
        let judge = |a: &[f64], b: &[f64]| {
            Contrast::default()
                .plus(1.0, a.to_vec())
                .plus(-1.0, b.to_vec())
                .judge()
        };
        // Difference 0.1, SE sqrt(2 * 0.0001 / 3) = 0.0082: reproduced.
        let clear = judge(&[0.51, 0.50, 0.49], &[0.41, 0.40, 0.39]);
        assert_eq!(clear.verdict, Verdict::Reproduced);
        assert!((clear.effect.unwrap() - 0.1).abs() < 1e-12);
        assert!((clear.se.unwrap() - (2.0 * 0.0001 / 3.0f64).sqrt()).abs() < 1e-12);
        // The same difference with a spread of 0.1: inconclusive.
        let noisy = judge(&[0.6, 0.5, 0.4], &[0.5, 0.4, 0.3]);
        assert_eq!(noisy.verdict, Verdict::Inconclusive);
        // The opposite difference, clear: not reproduced.
        assert_eq!(
            judge(&[0.41, 0.40, 0.39], &[0.51, 0.50, 0.49]).verdict,
            Verdict::NotReproduced
        );
        // One seed has no spread.
        let single = judge(&[0.9], &[0.1, 0.2]);
        assert_eq!((single.verdict, single.se), (Verdict::Inconclusive, None));
        // A smallest effect: none of 3 seeds has a specialist, at least one was claimed.
        let zero = Contrast::default().plus(1.0, vec![0.0; 3]).smallest(1.0);
        assert_eq!(zero.judge().verdict, Verdict::NotReproduced);
        let some = Contrast::default()
            .plus(1.0, vec![2.0, 3.0, 2.0])
            .smallest(1.0);
        assert_eq!(some.judge().verdict, Verdict::Reproduced);
    }

    #[test]
    fn a_claim_needs_all_its_comparisons() {
        use Verdict::*;
        assert_eq!(Verdict::of_all([Reproduced, Reproduced]), Reproduced);
        assert_eq!(Verdict::of_all([Reproduced, Inconclusive]), Inconclusive);
        assert_eq!(
            Verdict::of_all([Inconclusive, NotReproduced]),
            NotReproduced
        );
        assert_eq!(Verdict::of_all([Reproduced, NotTested]), NotTested);
        assert_eq!(Verdict::of_all([]), NotTested);
    }
}
