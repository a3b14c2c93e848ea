//! The LIMoE paper's four claims judged on a sweep's settings, each with a verdict, its
//! effect size, the spread over seeds and the evidence it rests on.
//!
//! The settings are found by what they trained ([`Recipe`]), so any sweep that has them is
//! judged (`experiments/limoe-claims.yaml` has them all); a claim whose settings are missing
//! is `not tested`.

mod contrast;
mod recipe;

use std::collections::BTreeMap;

use limoe_core::spec::{Arch, Scope};
use serde::Serialize;

pub use contrast::{Contrast, Judged, VERDICT_RULE, Verdict, mean, sample_variance};
pub use recipe::Recipe;

use crate::report::TrialReport;

/// One comparison of a claim.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    /// What is compared, in words.
    pub what: String,
    /// The metric, in words.
    pub metric: String,
    /// Whether the claim's verdict rests on it (else it is shown as context).
    pub decides: bool,
    /// The effect, its standard error and verdict.
    #[serde(flatten)]
    pub judged: Judged,
}

/// One of the paper's claims.
#[derive(Clone, Debug, Serialize)]
pub struct Claim {
    /// `a` to `d`.
    pub id: &'static str,
    /// The claim as the paper makes it.
    pub statement: &'static str,
    /// What its comparisons say together.
    pub verdict: Verdict,
    /// The comparisons.
    pub comparisons: Vec<Comparison>,
    /// The table and figure it rests on.
    pub evidence: &'static str,
    /// What else the reader needs (settings missing, trials that failed).
    pub notes: Vec<String>,
}

/// The metrics the claims read, as keys of [`crate::report::RunSummary::metrics`].
const I2T_R1: &str = "retrieval_i2t_r1";
const T2I_R1: &str = "retrieval_t2i_r1";
const TEXT_TOP_SHARE: &str = "text_top_share";
const IMAGE_SPECIALISTS: &str = "image_specialists";
const TEXT_SPECIALISTS: &str = "text_specialists";

/// A sweep's settings as the claims see them.
pub struct Settings<'a> {
    trials: &'a [TrialReport],
    /// The benchmarks never trained on, whose zero-shot top-1 is the claims' accuracy.
    held_out: &'a [String],
    /// The LIMoE recipe's capacity the others are compared at.
    capacity: Option<f64>,
}

impl<'a> Settings<'a> {
    /// The trials of a sweep; `held_out` names its held-out benchmarks.
    pub fn new(trials: &'a [TrialReport], held_out: &'a [String]) -> Settings<'a> {
        let capacities: Vec<f64> = (trials.iter())
            .filter_map(|t| t.recipe)
            .filter(|r| r.is_limoe() && r.bpr)
            .map(|r| r.capacity)
            .collect();
        let capacity = match capacities.contains(&1.0) {
            true => Some(1.0),
            false => capacities.first().copied(),
        };
        Settings {
            trials,
            held_out,
            capacity,
        }
    }

    /// The name of the first setting whose recipe passes `matches`.
    pub fn find(&self, matches: impl Fn(&Recipe) -> bool) -> Option<&'a str> {
        (self.trials.iter())
            .find(|t| t.recipe.as_ref().is_some_and(&matches))
            .map(|t| t.setting.as_str())
    }

    /// The trials of the LIMoE recipe with BPR at the reference capacity, by seed.
    pub fn limoe_trials(&self) -> impl Iterator<Item = &'a TrialReport> {
        let mut trials: Vec<&TrialReport> = match self.limoe() {
            Some(limoe) => self.trials.iter().filter(|t| t.setting == limoe).collect(),
            None => Vec::new(),
        };
        trials.sort_by_key(|t| t.seed);
        trials.into_iter()
    }

    /// The LIMoE recipe with BPR at the reference capacity.
    fn limoe(&self) -> Option<&'a str> {
        self.find(|r| r.is_limoe() && r.bpr && Some(r.capacity) == self.capacity)
    }

    /// An MoE setting without entropy losses, with BPR at the reference capacity.
    fn without_entropy(&self, balance: Option<Scope>) -> Option<&'a str> {
        self.find(|r| r.is_without_entropy(balance) && r.bpr && Some(r.capacity) == self.capacity)
    }

    /// The value of `metric` in each finished trial of `setting`.
    pub fn values(&self, setting: &str, metric: &str) -> Vec<f64> {
        (self.trials.iter())
            .filter(|t| t.setting == setting)
            .filter_map(|t| self.value(t, metric))
            .filter(|v| v.is_finite())
            .collect()
    }

    /// One trial's `metric`; [`ZERO_SHOT`] is its mean over the held-out benchmarks.
    fn value(&self, trial: &TrialReport, metric: &str) -> Option<f64> {
        let metrics = trial.summary.as_ref()?.metrics();
        if metric != ZERO_SHOT {
            return crate::report::find_metric(&metrics, metric);
        }
        if self.held_out.is_empty() {
            return crate::report::find_metric(&metrics, "zero_shot_top1");
        }
        let scores: Vec<f64> = (self.held_out.iter())
            .filter_map(|d| metrics.get(&format!("{d}/zero_shot_top1")).copied())
            .collect();
        (scores.len() == self.held_out.len()).then(|| mean(&scores))
    }

    /// The accuracy the claims compare, in words.
    pub fn zero_shot_name(&self) -> String {
        match self.held_out {
            [] => "zero-shot top-1 (test split of the training data)".into(),
            names => format!("zero-shot top-1 on held-out {}", names.join(", ")),
        }
    }

    /// Trials of `setting` that ended without numbers (failed or diverged).
    fn failed(&self, setting: &str) -> usize {
        (self.trials.iter())
            .filter(|t| t.setting == setting && t.state == "failed")
            .count()
    }

    /// The capacities of the LIMoE recipe with and without BPR: `(capacity, bpr, setting)`,
    /// by capacity.
    pub fn capacity_curve(&self) -> Vec<(f64, bool, &'a str)> {
        let mut curve: Vec<(f64, bool, &str)> = Vec::new();
        for t in self.trials {
            let Some(r) = t.recipe.filter(|r| r.is_limoe()) else {
                continue;
            };
            if !curve
                .iter()
                .any(|(c, b, _)| *c == r.capacity && *b == r.bpr)
            {
                curve.push((r.capacity, r.bpr, &t.setting));
            }
        }
        curve.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        curve
    }
}

/// The key [`Settings::values`] reads as the held-out zero-shot accuracy.
pub const ZERO_SHOT: &str = "held-out zero-shot";

/// A difference of two settings' means, `a - b`.
fn difference(
    s: &Settings,
    what: String,
    metric: &str,
    label: &str,
    a: &str,
    b: &str,
) -> Comparison {
    Comparison {
        what,
        metric: label.to_owned(),
        decides: true,
        judged: Contrast::default()
            .plus(1.0, s.values(a, metric))
            .plus(-1.0, s.values(b, metric))
            .judge(),
    }
}

/// A comparison the sweep cannot make, and the note saying why.
fn missing(what: &str) -> String {
    format!("the sweep has no {what} setting")
}

fn untested(what: String, metric: &str) -> Comparison {
    Comparison {
        what,
        metric: metric.to_owned(),
        decides: true,
        judged: Judged {
            effect: None,
            se: None,
            seeds: 0,
            verdict: Verdict::NotTested,
        },
    }
}

fn claim(
    id: &'static str,
    statement: &'static str,
    evidence: &'static str,
    comparisons: Vec<Comparison>,
    notes: Vec<String>,
) -> Claim {
    let verdict = Verdict::of_all(
        (comparisons.iter())
            .filter(|c| c.decides)
            .map(|c| c.judged.verdict),
    );
    Claim {
        id,
        statement,
        verdict,
        comparisons,
        evidence,
        notes,
    }
}

/// The four claims judged on `settings`.
pub fn judge_claims(s: &Settings) -> Vec<Claim> {
    vec![
        beats_dense(s),
        text_collapse(s),
        specialists(s),
        bpr_at_low_capacity(s),
    ]
}

fn beats_dense(s: &Settings) -> Claim {
    let zero_shot = s.zero_shot_name();
    let metrics = [
        (ZERO_SHOT, zero_shot.as_str()),
        (I2T_R1, "image-to-text R@1"),
        (T2I_R1, "text-to-image R@1"),
    ];
    let dense = s.find(|r| r.arch == Arch::Dense);
    let mut notes = Vec::new();
    let comparisons = match (s.limoe(), dense) {
        (Some(limoe), Some(dense)) => (metrics.iter())
            .map(|(m, label)| difference(s, format!("{limoe} - {dense}"), m, label, limoe, dense))
            .collect(),
        (limoe, _) => {
            notes.push(missing(if limoe.is_none() { "LIMoE" } else { "dense" }));
            (metrics.iter())
                .map(|(_, label)| untested("LIMoE - dense".into(), label))
                .collect()
        }
    };
    claim(
        "a",
        "LIMoE beats the dense single-tower model at equal active compute, on zero-shot and \
         retrieval.",
        "the settings table and bars below",
        comparisons,
        notes,
    )
}

fn text_collapse(s: &Settings) -> Claim {
    let label = "top expert's share of text tokens (test split, mean over MoE blocks)";
    let limoe = s.limoe();
    let mut notes = Vec::new();
    let mut comparisons = Vec::new();
    for (balance, what) in [
        (None, "no auxiliary loss"),
        (Some(Scope::Joint), "joint V-MoE balancing"),
    ] {
        match (s.without_entropy(balance), limoe) {
            (Some(other), Some(limoe)) => {
                comparisons.push(difference(
                    s,
                    format!("{other} - {limoe}"),
                    TEXT_TOP_SHARE,
                    label,
                    other,
                    limoe,
                ));
                let failed = s.failed(other);
                if failed > 0 {
                    notes.push(format!(
                        "{failed} trial(s) of {other} failed: unstable training"
                    ));
                }
            }
            (other, _) => {
                notes.push(missing(if other.is_none() { what } else { "LIMoE" }));
                comparisons.push(untested(format!("{what} - LIMoE"), label));
            }
        }
    }
    let joint = s.without_entropy(Some(Scope::Joint));
    let per_modality = s.without_entropy(Some(Scope::PerModality));
    if let (Some(joint), Some(per_modality)) = (joint, per_modality) {
        comparisons.push(Comparison {
            decides: false,
            ..difference(
                s,
                format!("{joint} - {per_modality}"),
                TEXT_TOP_SHARE,
                label,
                joint,
                per_modality,
            )
        });
    }
    claim(
        "b",
        "Without entropy losses, and with modality-agnostic V-MoE balancing, the minority \
         modality (text) collapses onto few experts; the entropy losses prevent it.",
        "the text collapse figure and the top text share column",
        comparisons,
        notes,
    )
}

fn specialists(s: &Settings) -> Claim {
    let mut notes = Vec::new();
    let comparisons = [
        (
            IMAGE_SPECIALISTS,
            "image-specialist experts (>= 90% image tokens), summed over blocks",
        ),
        (
            TEXT_SPECIALISTS,
            "text-specialist experts (<= 10% image tokens), summed over blocks",
        ),
    ]
    .into_iter()
    .map(|(metric, label)| match s.limoe() {
        Some(limoe) => Comparison {
            what: format!("{limoe}, against at least one"),
            metric: label.to_owned(),
            decides: true,
            judged: Contrast::default()
                .plus(1.0, s.values(limoe, metric))
                .smallest(1.0)
                .judge(),
        },
        None => untested("LIMoE".into(), label),
    })
    .collect();
    if s.limoe().is_none() {
        notes.push(missing("LIMoE"));
    }
    claim(
        "c",
        "Image-specialist and text-specialist experts emerge without being asked for.",
        "the specialisation bars per block and the per-patch routing pictures",
        comparisons,
        notes,
    )
}

fn bpr_at_low_capacity(s: &Settings) -> Claim {
    let curve = s.capacity_curve();
    let at = |capacity: f64, bpr: bool| {
        (curve.iter())
            .find(|(c, b, _)| *c == capacity && *b == bpr)
            .map(|(_, _, setting)| *setting)
    };
    let label = s.zero_shot_name();
    let lowest = curve.first().map(|(c, ..)| *c);
    let cells = match (s.capacity, lowest) {
        (Some(reference), Some(lowest)) if lowest < reference => [
            at(reference, false),
            at(lowest, false),
            at(reference, true),
            at(lowest, true),
        ]
        .into_iter()
        .collect::<Option<Vec<&str>>>()
        .map(|cells| (reference, lowest, cells)),
        _ => None,
    };
    let (comparison, notes) = match cells {
        Some((reference, lowest, cells)) => {
            let mut contrast = Contrast::default();
            for (c, setting) in [1.0, -1.0, -1.0, 1.0].into_iter().zip(&cells) {
                contrast = contrast.plus(c, s.values(setting, ZERO_SHOT));
            }
            let comparison = Comparison {
                what: format!(
                    "accuracy lost from capacity {reference} to {lowest} without BPR, minus \
                     with BPR"
                ),
                metric: label,
                decides: true,
                judged: contrast.judge(),
            };
            (comparison, Vec::new())
        }
        None => (
            untested("accuracy lost as capacity shrinks, without BPR minus with".into(), &label),
            vec!["the sweep does not train the LIMoE recipe with and without BPR at a capacity below the reference".into()],
        ),
    };
    claim(
        "d",
        "BPR matters when capacity is tight: with BPR, accuracy degrades less as capacity \
         shrinks.",
        "the accuracy against capacity figure",
        vec![comparison],
        notes,
    )
}

/// The per-step top text share curves of every MoE setting at the reference capacity with
/// BPR: `(setting, [(step, share) of each seed])`.
pub fn collapse_curves<'a>(s: &Settings<'a>) -> Vec<(&'a str, Vec<(f64, f64)>)> {
    let mut curves: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
    for t in s.trials {
        let Some(r) = t.recipe else { continue };
        if r.arch != Arch::Limoe || !r.bpr || Some(r.capacity) != s.capacity {
            continue;
        }
        let points = t
            .text_top_share_curve
            .iter()
            .map(|&(step, v)| (step as f64, v));
        curves.entry(&t.setting).or_default().extend(points);
    }
    curves.into_iter().collect()
}

#[cfg(test)]
mod tests;
