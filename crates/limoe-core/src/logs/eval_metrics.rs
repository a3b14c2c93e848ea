//! The names in the eval log's `dataset` and `metric` columns, each spelled once: the
//! evaluation suite (`crates/limoe-train/src/evaluate.rs`) writes its rows under them, and
//! validation checks `train.best.metric` against the ones a spec's periodic evaluation writes.

/// The `dataset` of the metrics taken over every pair of a split, whatever its source.
pub const ALL_DATASETS: &str = "all";

/// Zero-shot top-1 accuracy.
pub const ZERO_SHOT_TOP1: &str = "zero_shot_top1";
/// Zero-shot top-5 accuracy.
pub const ZERO_SHOT_TOP5: &str = "zero_shot_top5";
/// Zero-shot top-1 recall averaged over the classes (balanced accuracy), as CLIP_benchmark's
/// `mean_per_class_recall`.
pub const MEAN_PER_CLASS_RECALL: &str = "mean_per_class_recall";
/// The top-1 accuracy of guessing: one over the number of classes.
pub const CHANCE_TOP1: &str = "chance_top1";
/// What zero-shot classification writes for each dataset, in this order.
pub const ZERO_SHOT: [&str; 4] = [
    ZERO_SHOT_TOP1,
    ZERO_SHOT_TOP5,
    MEAN_PER_CLASS_RECALL,
    CHANCE_TOP1,
];

/// A classifier's top-1 accuracy with its own head, on the `all` dataset.
pub const TOP1: &str = "top1";
/// What a classifier's evaluation writes, in this order.
pub const CLASSIFICATION: [&str; 2] = [TOP1, CHANCE_TOP1];

/// The matmul GFLOPs of the forward pass per example (`crates/limoe-model/src/plan.rs`,
/// `forward_flops`), on the `all` dataset: at the spec's evaluation routing for every model
/// (a dense one's single point), and at each inference capacity.
pub const GFLOPS: &str = "gflops";

/// What the inference-capacity evaluation measures at each setting besides the accuracies:
/// the fraction of (token, choice) assignments dropped, and [`GFLOPS`].
pub const CAPACITY_MEASURES: [&str; 2] = ["dropped", GFLOPS];

/// `capacity_<factor>_<bpr|no_bpr>_<metric>`: `metric` measured at an inference capacity,
/// e.g. `capacity_0.5_bpr_top1`.
pub fn capacity_metric(factor: f64, bpr: bool, metric: &str) -> String {
    let order = if bpr { "bpr" } else { "no_bpr" };
    format!("capacity_{factor}_{order}_{metric}")
}

/// The (factor, BPR, metric) of a [`capacity_metric`] name.
pub fn parse_capacity_metric(name: &str) -> Option<(f64, bool, &str)> {
    let rest = name.strip_prefix("capacity_")?;
    let (factor, rest) = rest.split_once('_')?;
    let (bpr, metric) = match rest.strip_prefix("no_bpr_") {
        Some(metric) => (false, metric),
        None => (true, rest.strip_prefix("bpr_")?),
    };
    Some((factor.parse().ok()?, bpr, metric))
}

/// Retrieval's directions: image to text, text to image.
pub const RETRIEVAL_DIRECTIONS: [&str; 2] = ["i2t", "t2i"];
/// What retrieval measures in each direction: recall at 1, 5 and 10, the median rank.
pub const RETRIEVAL_MEASURES: [&str; 4] = ["r1", "r5", "r10", "median_rank"];

/// How many pairs retrieval ranked: each query has this many candidates, so guessing finds
/// the match within the top K with probability K / pairs (the chance level of R@K).
pub const RETRIEVAL_PAIRS: &str = "retrieval_pairs";

/// `retrieval_<direction>_<measure>`, e.g. `retrieval_i2t_r1`.
pub fn retrieval_metric(direction: &str, measure: &str) -> String {
    format!("retrieval_{direction}_{measure}")
}

/// `few_shot_<shots>`: the linear probe's accuracy with that many shots per class.
pub fn few_shot_metric(shots: usize) -> String {
    format!("few_shot_{shots}")
}

/// A metric's name across datasets, `<dataset>/<metric>` (e.g. `synthetic/zero_shot_top1`):
/// how eval summaries, checkpoints and `train.best.metric` name it.
pub fn metric_key(dataset: &str, metric: &str) -> String {
    format!("{dataset}/{metric}")
}
