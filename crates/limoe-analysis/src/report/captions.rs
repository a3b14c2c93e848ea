//! The captions of a run's plots: what is plotted, then what this run's numbers show (the
//! collapsed expert, the dead experts, how far the loss fell), never a general claim that
//! the run may contradict.

use std::fmt::Write as _;

use limoe_core::logs::eval::{DATASET, METRIC, STEP, VALUE};
use limoe_core::logs::eval_metrics::{ALL_DATASETS, ZERO_SHOT_TOP1, metric_key};
use limoe_core::logs::metrics as metrics_log;
use polars::prelude::DataFrame;

use super::RunSummary;
use super::capacity::{accuracy_words, bpr_words};
use super::html::number;
use crate::capacity::{CapacityCurve, REFERENCE_FACTOR, WITHIN};
use crate::columns::{floats, strings};
use crate::names::metric_name;

/// A block's top expert taking at least this share of a modality's tokens has collapsed
/// that modality onto itself.
const COLLAPSED: f64 = 0.9;

/// The specialisation plot: per block, the specialists and where text and image go.
pub(crate) fn specialisation(summary: &RunSummary) -> String {
    let mut out = format!(
        "Experts of each MoE block sorted by the share of image tokens they process ({} \
         split, last step).",
        summary.routing_split.as_deref().unwrap_or("?")
    );
    for b in &summary.blocks {
        let mixed = b.experts - b.image_specialists - b.text_specialists;
        let _ = write!(
            out,
            " Block {}: {} image and {} text specialists, {mixed} mixed of {} experts",
            b.block, b.image_specialists, b.text_specialists, b.experts
        );
        for (modality, share, expert) in [
            ("text", b.text_top_share, b.text_top_expert),
            ("image", b.image_top_share, b.image_top_expert),
        ] {
            let (Some(share), Some(expert)) = (share, expert) else {
                continue;
            };
            let share = format!("{share:.2}");
            if share.parse::<f64>().is_ok_and(|s| s >= COLLAPSED) {
                let _ = write!(
                    out,
                    "; {modality} collapsed onto expert {expert} in block {} ({share} of \
                     {modality} tokens)",
                    b.block
                );
            } else {
                let _ = write!(
                    out,
                    "; the busiest {modality} expert ({expert}) takes {share} of {modality} \
                     tokens"
                );
            }
        }
        out.push('.');
    }
    out
}

/// The utilisation plot: the experts that are dead in the final routing.
pub(crate) fn utilisation(summary: &RunSummary, dead_threshold: f64) -> String {
    let mut out = format!(
        "Each expert's share of a modality's tokens per training step (white: none); experts \
         under {dead_threshold} of a modality's tokens at the last step are flagged dead."
    );
    let dead: Vec<String> = (summary.blocks.iter())
        .flat_map(|b| {
            b.dead
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(move |(m, n)| format!("{n} of {} for {m} in block {}", b.experts, b.block))
        })
        .collect();
    let split = summary.routing_split.as_deref().unwrap_or("?");
    if summary.blocks.is_empty() {
        return out;
    }
    if dead.is_empty() {
        let _ = write!(
            out,
            " In the final routing ({split} split) no expert is dead."
        );
    } else {
        let _ = write!(
            out,
            " In the final routing ({split} split) dead experts: {}.",
            dead.join(", ")
        );
    }
    out
}

/// The routing curves: the dropped rates at the last training step.
pub(crate) fn routing_curves(summary: &RunSummary) -> String {
    let mut out = "Local (per-token) and global (mean gate) router entropy and the share of \
                   dropped tokens per modality against the training step."
        .to_owned();
    let metrics = summary.metrics();
    if let (Some(image), Some(text)) = (
        metrics.get("train_dropped_image"),
        metrics.get("train_dropped_text"),
    ) {
        let _ = write!(
            out,
            " At the last training step the MoE blocks dropped {} of image and {} of text \
             tokens (mean over blocks, train capacity).",
            number(Some(*image)),
            number(Some(*text))
        );
    }
    out
}

/// The class routing heatmaps (what they show; the top classes table gives the numbers).
pub(crate) fn classes() -> String {
    "Share of each class's image tokens that goes to each expert, per MoE block (rows sum to \
     1; final checkpoint, test split)."
        .to_owned()
}

/// The first and last (step, value) of a column of the metrics log, when it has finite
/// values.
fn first_and_last(metrics: &DataFrame, column: &str) -> Option<((f64, f64), (f64, f64))> {
    let steps = floats(metrics, metrics_log::STEP).ok()?;
    let values = floats(metrics, column).ok()?;
    let points: Vec<(f64, f64)> = (steps.into_iter().zip(values))
        .filter_map(|(s, v)| Some((s?, v?)))
        .filter(|(_, v)| v.is_finite())
        .collect();
    Some((*points.first()?, *points.last()?))
}

/// "went from A at step S to B at step T", or "was A at step S" for a single point.
fn change(((s0, v0), (s1, v1)): ((f64, f64), (f64, f64))) -> String {
    if s0 == s1 {
        return format!("was {} at step {s0}", number(Some(v0)));
    }
    format!(
        "went from {} at step {s0} to {} at step {s1}",
        number(Some(v0)),
        number(Some(v1))
    )
}

/// The loss plot: how far the total loss fell.
pub(crate) fn losses(metrics: &DataFrame) -> String {
    let mut out = "The total loss and its terms per training step (auxiliary terms unweighted, \
                   log scale)."
        .to_owned();
    if let Some(points) = first_and_last(metrics, metrics_log::LOSS) {
        let _ = write!(out, " The total loss {}.", change(points));
    }
    out
}

/// Whether the metrics log has a contrastive temperature to draw (a classifier logs its
/// logit scale as NaN).
pub(crate) fn has_temperature(metrics: &DataFrame) -> bool {
    first_and_last(metrics, metrics_log::LOGIT_SCALE).is_some()
}

/// The temperature plot: where the temperature started and ended.
pub(crate) fn temperature(metrics: &DataFrame) -> String {
    if !has_temperature(metrics) {
        return "The learning rate per training step (the model learns no contrastive \
                temperature)."
            .to_owned();
    }
    let mut out = "The learned softmax temperature (1 / logit scale) and the learning rate per \
                   training step."
        .to_owned();
    if let Some(((s0, a), (s1, b))) = first_and_last(metrics, metrics_log::LOGIT_SCALE)
        && a > 0.0
        && b > 0.0
    {
        let _ = write!(
            out,
            " The temperature {}.",
            change(((s0, 1.0 / a), (s1, 1.0 / b)))
        );
    }
    out
}

/// The inference-capacity figure: per curve, its accuracy at capacity 1 and how far down
/// in capacity it stays within [`WITHIN`] of it, with BPR and without (each against its
/// own).
pub(crate) fn capacity(curves: &[CapacityCurve]) -> String {
    let mut out = "Accuracy with every MoE block at each inference capacity factor (left) and \
                   against the matmul GFLOPs per example that capacity spends (right), with \
                   Batch Priority Routing (the most confident tokens first) and without (tokens \
                   in order)."
        .to_owned();
    for curve in curves {
        let sides: Vec<String> = [true, false]
            .into_iter()
            .filter(|&bpr| !curve.line(bpr).is_empty())
            .map(|bpr| match curve.at(REFERENCE_FACTOR, bpr) {
                Some(reference) => format!(
                    "{} it is {} at capacity {REFERENCE_FACTOR} and stays within {WITHIN} \
                     of that {}",
                    bpr_words(bpr),
                    number(Some(reference.accuracy)),
                    curve.kept(bpr).describe()
                ),
                None => format!("{}, {}", bpr_words(bpr), curve.kept(bpr).describe()),
            })
            .collect();
        let _ = write!(
            out,
            " {}: {}.",
            accuracy_words(&curve.key),
            sides.join("; ")
        );
    }
    out
}

/// The eval curves: how zero-shot top-1 of each dataset and image→text R@1 changed.
pub(crate) fn eval(eval: &DataFrame) -> String {
    let mut out = "Periodic evaluation on validation pairs against the training step.".to_owned();
    let (Ok(steps), Ok(values), Ok(datasets), Ok(metrics)) = (
        floats(eval, STEP),
        floats(eval, VALUE),
        strings(eval, DATASET),
        strings(eval, METRIC),
    ) else {
        return out;
    };
    let mut keys: Vec<String> = Vec::new();
    let mut points: Vec<Vec<(f64, f64)>> = Vec::new();
    for i in 0..eval.height() {
        let (Some(step), Some(value), Some(dataset), Some(metric)) =
            (steps[i], values[i], &datasets[i], &metrics[i])
        else {
            continue;
        };
        let shown =
            metric == ZERO_SHOT_TOP1 || (dataset == ALL_DATASETS && metric == "retrieval_i2t_r1");
        if !shown {
            continue;
        }
        let key = metric_key(dataset, metric);
        match keys.iter().position(|k| *k == key) {
            Some(j) => points[j].push((step, value)),
            None => {
                keys.push(key);
                points.push(vec![(step, value)]);
            }
        }
    }
    let changes: Vec<String> = keys
        .iter()
        .zip(&points)
        .filter_map(|(key, points)| {
            let name = metric_name(key);
            Some(format!(
                "{} ({}) {}",
                name.label,
                name.group,
                change((*points.first()?, *points.last()?))
            ))
        })
        .collect();
    if !changes.is_empty() {
        let _ = write!(out, " {}.", changes.join("; "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::change;

    #[test]
    fn a_single_point_is_no_change() {
        assert_eq!(
            change(((250.0, 0.26), (250.0, 0.26))),
            "was 0.2600 at step 250"
        );
        assert_eq!(
            change(((1.0, 4.0), (250.0, 1.0))),
            "went from 4 at step 1 to 1 at step 250"
        );
    }
}
