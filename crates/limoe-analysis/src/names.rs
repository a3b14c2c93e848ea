//! What each metric is called where people read it (report tables, sweep pages, `limoe
//! compare`), and the group it is shown in: written once here, so that every page and
//! command names a number the same way.
//!
//! Keys are those of [`RunSummary::metrics`](crate::report::RunSummary::metrics): eval
//! scores as `<dataset>/<metric>` (see `crates/limoe-core/src/logs/eval_metrics.rs`), the
//! run's own numbers by name.

use limoe_core::logs::eval_metrics::{
    ALL_DATASETS, CAPACITY_MEASURES, CHANCE_TOP1, GFLOPS, MEAN_PER_CLASS_RECALL, RETRIEVAL_PAIRS,
    TOP1, ZERO_SHOT_TOP1, ZERO_SHOT_TOP5, parse_capacity_metric,
};

/// The group of the run's training numbers.
pub const TRAINING: &str = "training";
/// The group of the routing numbers.
pub const ROUTING: &str = "routing";
/// The group of keys this table does not name.
const OTHER: &str = "other";

/// The eval metrics that are not retrieval or few-shot, with their words.
const EVAL: [(&str, &str); 7] = [
    (TOP1, "top-1 (own classification head)"),
    (GFLOPS, "GFLOPs per example"),
    (ZERO_SHOT_TOP1, "zero-shot top-1"),
    (ZERO_SHOT_TOP5, "zero-shot top-5"),
    (MEAN_PER_CLASS_RECALL, "mean per-class recall"),
    (CHANCE_TOP1, "chance top-1 (1 / classes)"),
    (RETRIEVAL_PAIRS, "pairs ranked (candidates per query)"),
];

/// Retrieval directions and measures (`retrieval_<direction>_<measure>`), with their words.
const DIRECTIONS: [(&str, &str); 2] = [("i2t", "image→text"), ("t2i", "text→image")];
const MEASURES: [(&str, &str); 4] = [
    ("r1", "R@1"),
    ("r5", "R@5"),
    ("r10", "R@10"),
    ("median_rank", "median rank"),
];

/// What the inference-capacity evaluation measures besides accuracies and [`GFLOPS`], with
/// its words.
const CAPACITY_WORDS: [(&str, &str); 1] = [(CAPACITY_MEASURES[0], "assignments dropped")];

/// Where inference-capacity metrics sort: after every other eval metric, before unnamed
/// ones, among themselves by key.
const CAPACITY_ORDER: usize = usize::MAX - 1;

/// The run's own numbers (not eval scores), with their group and words, in table order.
const RUN: [(&str, &str, &str); 14] = [
    (TRAINING, "steps", "training steps"),
    (TRAINING, "final_loss", "final loss"),
    (TRAINING, "final_contrastive", "final contrastive loss"),
    (
        TRAINING,
        "final_classification",
        "final classification loss",
    ),
    (TRAINING, "temperature", "temperature (1 / logit scale)"),
    (TRAINING, "train_seconds", "training seconds"),
    (
        ROUTING,
        "image_specialists",
        "image-specialist experts (all blocks)",
    ),
    (
        ROUTING,
        "text_specialists",
        "text-specialist experts (all blocks)",
    ),
    (ROUTING, "dead_experts", "dead experts (all blocks)"),
    (
        ROUTING,
        "text_top_share",
        "top expert's share of text (mean over blocks)",
    ),
    (
        ROUTING,
        "dropped_image",
        "dropped image tokens, eval capacity (mean over blocks)",
    ),
    (
        ROUTING,
        "dropped_text",
        "dropped text tokens, eval capacity (mean over blocks)",
    ),
    (
        ROUTING,
        "train_dropped_image",
        "dropped image tokens, train capacity (last step, mean over blocks)",
    ),
    (
        ROUTING,
        "train_dropped_text",
        "dropped text tokens, train capacity (last step, mean over blocks)",
    ),
];

/// How a metric key is shown.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricName {
    /// The heading it is shown under: the dataset of an eval score (`synthetic`, `all
    /// pairs`), [`TRAINING`] or [`ROUTING`].
    pub group: String,
    /// The metric in words, e.g. `image→text R@1`.
    pub label: String,
    /// Where it sorts within its group.
    pub order: usize,
}

/// The name of `key`: a `<dataset>/<metric>` eval score or one of the run's numbers; a key
/// this table does not know keeps its own spelling, in group `other`.
pub fn metric_name(key: &str) -> MetricName {
    if let Some((group, label, order)) = run_number(key) {
        return MetricName {
            group: group.to_owned(),
            label: label.to_owned(),
            order,
        };
    }
    let (dataset, metric) = key.rsplit_once('/').unwrap_or(("", key));
    let group = match dataset {
        "" => OTHER.to_owned(),
        ALL_DATASETS => "all pairs".to_owned(),
        dataset => dataset.to_owned(),
    };
    let (label, order) = eval_label(metric).unwrap_or_else(|| (metric.to_owned(), usize::MAX));
    MetricName {
        group,
        label,
        order,
    }
}

/// The words of an eval metric (without its dataset) and its order, when it is one the eval
/// stage writes.
fn eval_label(metric: &str) -> Option<(String, usize)> {
    if let Some((factor, bpr, measured)) = parse_capacity_metric(metric) {
        let words = match CAPACITY_WORDS.iter().find(|(m, _)| *m == measured) {
            Some((_, words)) => (*words).to_owned(),
            None => eval_label(measured).map_or(measured.to_owned(), |(words, _)| words),
        };
        let bpr = if bpr { "on" } else { "off" };
        return Some((
            format!("{words} at inference capacity {factor}, BPR {bpr}"),
            CAPACITY_ORDER,
        ));
    }
    if let Some(i) = EVAL.iter().position(|(m, _)| *m == metric) {
        return Some((EVAL[i].1.to_owned(), i));
    }
    if let Some(rest) = metric.strip_prefix("retrieval_") {
        for (d, (direction, direction_words)) in DIRECTIONS.iter().enumerate() {
            for (m, (measure, measure_words)) in MEASURES.iter().enumerate() {
                if rest == format!("{direction}_{measure}") {
                    let order = EVAL.len() + d * MEASURES.len() + m;
                    return Some((format!("{direction_words} {measure_words}"), order));
                }
            }
        }
    }
    let shots: usize = metric.strip_prefix("few_shot_")?.parse().ok()?;
    let order = EVAL.len() + DIRECTIONS.len() * MEASURES.len() + shots;
    Some((format!("{shots}-shot linear probe"), order))
}

/// The group, words and order of one of the run's own numbers.
fn run_number(key: &str) -> Option<(&'static str, &'static str, usize)> {
    let i = RUN.iter().position(|(_, k, _)| *k == key)?;
    Some((RUN[i].0, RUN[i].2, i))
}

/// Where a group sorts: eval datasets first (by name, `all pairs` last of them), then
/// routing, training and unnamed keys.
pub fn group_order(group: &str) -> (u8, String) {
    let rank = match group {
        ROUTING => 2,
        TRAINING => 3,
        OTHER => 4,
        "all pairs" => 1,
        _ => 0,
    };
    (rank, group.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eval_scores_are_named_in_words_under_their_dataset() {
        let name = metric_name("all/retrieval_i2t_r1");
        assert_eq!(
            (name.group.as_str(), name.label.as_str()),
            ("all pairs", "image→text R@1")
        );
        let name = metric_name("synthetic/zero_shot_top1");
        assert_eq!(
            (name.group.as_str(), name.label.as_str()),
            ("synthetic", "zero-shot top-1")
        );
        assert_eq!(
            metric_name("unseen/few_shot_5").label,
            "5-shot linear probe"
        );
        assert!(
            metric_name("all/retrieval_i2t_r1").order < metric_name("all/retrieval_t2i_r1").order
        );
        assert_eq!(
            metric_name("all/top1").label,
            "top-1 (own classification head)"
        );
        assert_eq!(
            metric_name("all/capacity_0.5_no_bpr_top1").label,
            "top-1 (own classification head) at inference capacity 0.5, BPR off"
        );
        assert_eq!(
            metric_name("all/capacity_1.5_bpr_gflops").label,
            "GFLOPs per example at inference capacity 1.5, BPR on"
        );
        assert_eq!(
            metric_name("final_classification").label,
            "final classification loss"
        );
    }

    #[test]
    fn run_numbers_are_grouped_and_unknown_keys_kept() {
        assert_eq!(metric_name("final_loss").group, TRAINING);
        assert_eq!(metric_name("dropped_text").group, ROUTING);
        let unknown = metric_name("x/whatever");
        assert_eq!(
            (unknown.group.as_str(), unknown.label.as_str()),
            ("x", "whatever")
        );
        assert!(group_order("synthetic") < group_order("all pairs"));
        assert!(group_order("all pairs") < group_order(ROUTING));
    }
}
