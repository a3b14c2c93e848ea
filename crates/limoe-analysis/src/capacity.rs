//! V-MoE's inference-capacity curves: a model's accuracy, dropped assignments and GFLOPs
//! per example at each capacity factor its eval measured, with Batch Priority Routing and
//! without, read from an eval summary's `capacity_<factor>_<bpr|no_bpr>_<metric>` keys (see
//! `crates/limoe-core/src/logs/eval_metrics.rs`), and how far down each curve keeps its
//! accuracy at capacity 1.

use std::collections::BTreeMap;

use limoe_core::logs::eval_metrics::{
    ALL_DATASETS, CAPACITY_MEASURES, TOP1, ZERO_SHOT_TOP1, capacity_metric, metric_key,
    parse_capacity_metric,
};
use limoe_core::records::EvalSummary;
use serde::Serialize;

/// The accuracies drawn against capacity: a classifier's own top-1, a contrastive model's
/// zero-shot top-1.
pub const CAPACITY_ACCURACIES: [&str; 2] = [TOP1, ZERO_SHOT_TOP1];

/// The capacity factor the others are compared with: every expert has room for its fair
/// share of the tokens.
pub const REFERENCE_FACTOR: f64 = 1.0;

/// How far below its accuracy at [`REFERENCE_FACTOR`] a curve may fall and still count as
/// keeping it: one point of accuracy.
pub const WITHIN: f64 = 0.01;

/// One (factor, BPR) setting of a curve.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CapacityPoint {
    /// The capacity factor of every MoE block.
    pub factor: f64,
    /// Batch Priority Routing on.
    pub bpr: bool,
    /// The curve's accuracy at this setting.
    pub accuracy: f64,
    /// The fraction of (token, choice) assignments dropped, when the eval measured it.
    pub dropped: Option<f64>,
    /// Matmul GFLOPs of the forward pass per example, when the eval measured it.
    pub gflops: Option<f64>,
}

/// One accuracy of one dataset at every inference capacity measured.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CapacityCurve {
    /// The accuracy's key at the model's own eval routing, `<dataset>/<metric>` (e.g.
    /// `all/top1`), which names it in words ([`crate::names::metric_name`]).
    pub key: String,
    /// Its points, BPR on first, each half by factor.
    pub points: Vec<CapacityPoint>,
}

/// How far down in capacity a curve keeps its accuracy at [`REFERENCE_FACTOR`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum Kept {
    /// The curve has no point at the reference factor to compare with.
    NoReference,
    /// No factor below the reference keeps it (or none below was measured).
    OnlyAtReference,
    /// Every measured factor from this one up to the reference keeps it.
    DownTo(f64),
}

impl Kept {
    /// In words, for captions and tables: `down to capacity 0.5`.
    pub fn describe(self) -> String {
        match self {
            Kept::NoReference => format!("no capacity {REFERENCE_FACTOR} point to compare with"),
            Kept::OnlyAtReference => format!("at no capacity below {REFERENCE_FACTOR}"),
            Kept::DownTo(factor) => format!("down to capacity {factor}"),
        }
    }
}

impl CapacityCurve {
    /// The `(factor, accuracy)` points with BPR on or off, by factor.
    pub fn line(&self, bpr: bool) -> Vec<(f64, f64)> {
        (self.points.iter())
            .filter(|p| p.bpr == bpr)
            .map(|p| (p.factor, p.accuracy))
            .collect()
    }

    /// The point at `factor` with BPR on or off, when measured.
    pub fn at(&self, factor: f64, bpr: bool) -> Option<&CapacityPoint> {
        (self.points.iter()).find(|p| p.factor == factor && p.bpr == bpr)
    }

    /// How far down the curve with BPR on or off stays within [`WITHIN`] of its own
    /// accuracy at the reference factor (BPR on and off are each compared with their own).
    pub fn kept(&self, bpr: bool) -> Kept {
        kept_within(&self.line(bpr), WITHIN)
    }
}

/// How far down a curve of `(factor, accuracy)` points stays within `tolerance` of its
/// accuracy at [`REFERENCE_FACTOR`]: the lowest factor below it such that every measured
/// factor from there up to the reference is no more than `tolerance` below it.
pub fn kept_within(line: &[(f64, f64)], tolerance: f64) -> Kept {
    let Some(&(_, reference)) = line.iter().find(|(f, _)| *f == REFERENCE_FACTOR) else {
        return Kept::NoReference;
    };
    let mut below: Vec<(f64, f64)> = (line.iter().copied())
        .filter(|(f, _)| *f < REFERENCE_FACTOR)
        .collect();
    below.sort_by(|a, b| b.0.total_cmp(&a.0));
    // A hair of slack, so that a drop of exactly `tolerance` counts as within.
    let keeps = |accuracy: f64| reference - accuracy <= tolerance + 1e-12;
    match below.iter().take_while(|(_, a)| keeps(*a)).last() {
        Some(&(factor, _)) => Kept::DownTo(factor),
        None => Kept::OnlyAtReference,
    }
}

/// Whether `key` (`<dataset>/<metric>`) is one of the inference-capacity evaluation's.
pub fn is_capacity_key(key: &str) -> bool {
    key.rsplit_once('/')
        .is_some_and(|(_, metric)| parse_capacity_metric(metric).is_some())
}

/// The curves of an eval summary, one per dataset and [`CAPACITY_ACCURACIES`] metric that
/// has capacity rows, by key; non-finite accuracies are left out. Empty for a model without
/// MoE blocks (or an eval without inference capacities).
pub fn capacity_curves(eval: &EvalSummary) -> Vec<CapacityCurve> {
    let mut curves: BTreeMap<String, Vec<CapacityPoint>> = BTreeMap::new();
    for (key, &accuracy) in eval {
        let Some((dataset, name)) = key.rsplit_once('/') else {
            continue;
        };
        let Some((factor, bpr, metric)) = parse_capacity_metric(name) else {
            continue;
        };
        if !CAPACITY_ACCURACIES.contains(&metric) || !accuracy.is_finite() {
            continue;
        }
        let measured = |measure: &str| {
            let key = metric_key(ALL_DATASETS, &capacity_metric(factor, bpr, measure));
            eval.get(&key).copied().filter(|v| v.is_finite())
        };
        let [dropped, gflops] = CAPACITY_MEASURES.map(measured);
        curves
            .entry(metric_key(dataset, metric))
            .or_default()
            .push(CapacityPoint {
                factor,
                bpr,
                accuracy,
                dropped,
                gflops,
            });
    }
    (curves.into_iter())
        .map(|(key, mut points)| {
            points.sort_by(|a, b| b.bpr.cmp(&a.bpr).then(a.factor.total_cmp(&b.factor)));
            CapacityCurve { key, points }
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A classifier's summary: top-1 at capacities 0.25, 0.5, 1 and 1.5 with BPR and without,
    /// each with its dropped fraction and GFLOPs, beside its own top-1.
    pub(crate) fn classifier_eval(with_bpr: [f64; 4], without: [f64; 4]) -> EvalSummary {
        let mut eval: EvalSummary = [("all/top1".to_owned(), 0.8)].into();
        for (bpr, accuracies) in [(true, with_bpr), (false, without)] {
            for (factor, accuracy) in [0.25, 0.5, 1.0, 1.5].into_iter().zip(accuracies) {
                let mut put = |metric: &str, value: f64| {
                    eval.insert(
                        metric_key(ALL_DATASETS, &capacity_metric(factor, bpr, metric)),
                        value,
                    );
                };
                put(TOP1, accuracy);
                put("chance_top1", 0.1);
                put("dropped", (1.0 - factor / 1.5) / 2.0);
                put("gflops", factor * 2.0);
            }
        }
        eval
    }

    #[test]
    fn curves_are_read_from_capacity_keys_with_their_measures() {
        let eval = classifier_eval([0.6, 0.795, 0.8, 0.81], [0.3, 0.7, 0.79, 0.8]);
        let [curve] = capacity_curves(&eval).try_into().unwrap();
        assert_eq!(curve.key, "all/top1");
        assert_eq!(curve.points.len(), 8);
        assert_eq!(
            curve.line(true),
            [(0.25, 0.6), (0.5, 0.795), (1.0, 0.8), (1.5, 0.81)]
        );
        let point = curve.at(0.5, false).unwrap();
        assert_eq!((point.accuracy, point.gflops), (0.7, Some(1.0)));
        assert_eq!(point.dropped, Some((1.0 - 0.5 / 1.5) / 2.0));
        assert!(is_capacity_key("all/capacity_0.5_no_bpr_gflops"));
        assert!(!is_capacity_key("all/top1"));
        assert!(capacity_curves(&[("all/top1".to_owned(), 0.8)].into()).is_empty());
    }

    #[test]
    fn bpr_on_and_off_are_each_kept_against_their_own_capacity_1() {
        // With BPR 0.5 is 0.005 below 1 (within), 0.25 is 0.2 below; without BPR 0.5 is
        // 0.09 below its own 0.79.
        let eval = classifier_eval([0.6, 0.795, 0.8, 0.81], [0.3, 0.7, 0.79, 0.8]);
        let [curve] = capacity_curves(&eval).try_into().unwrap();
        assert_eq!(curve.kept(true), Kept::DownTo(0.5));
        assert_eq!(curve.kept(false), Kept::OnlyAtReference);
        // Without BPR compared with its own 0.79, not with BPR's 0.8: 0.78 keeps it.
        let eval = classifier_eval([0.6, 0.795, 0.8, 0.81], [0.3, 0.78, 0.79, 0.8]);
        let [curve] = capacity_curves(&eval).try_into().unwrap();
        assert_eq!(curve.kept(false), Kept::DownTo(0.5));
    }

    #[test]
    fn a_curve_keeps_its_accuracy_only_down_to_its_first_drop() {
        let line = [(0.1, 0.8), (0.25, 0.7), (0.5, 0.79), (1.0, 0.8), (1.5, 0.6)];
        // 0.1 is within again, but 0.25 above it already fell out; 1.5 does not count.
        assert_eq!(kept_within(&line, 0.01), Kept::DownTo(0.5));
        assert_eq!(kept_within(&line, 0.2), Kept::DownTo(0.1));
        assert_eq!(kept_within(&line, 0.001), Kept::OnlyAtReference);
        assert_eq!(kept_within(&[(1.0, 0.8)], 0.01), Kept::OnlyAtReference);
        assert_eq!(kept_within(&[(0.5, 0.8)], 0.01), Kept::NoReference);
        assert_eq!(Kept::DownTo(0.25).describe(), "down to capacity 0.25");
        assert_eq!(Kept::OnlyAtReference.describe(), "at no capacity below 1");
    }
}
