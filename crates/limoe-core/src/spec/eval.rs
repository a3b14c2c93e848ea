//! The `eval` section: zero-shot classification, retrieval, few-shot probes, and the held-out
//! benchmarks they run on.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Spec;
use super::benchmark::Benchmark;
use super::check::Checker;
use super::diagnostic::did_you_mean;
use super::path::KeyPath;

/// The whole `eval` section.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EvalSpec {
    /// Labelled sets evaluated but never trained on, by name (imported by the `benchmarks`
    /// stage, not by ingest).
    pub benchmarks: BTreeMap<String, Benchmark>,
    /// Zero-shot classification.
    pub zero_shot: ZeroShot,
    /// Image-text retrieval on the test split.
    pub retrieval: Retrieval,
    /// Few-shot linear probes on frozen image embeddings.
    pub few_shot: FewShot,
    /// Pairs per evaluation batch.
    pub batch_size: usize,
    /// Dump per-token expert assignments with labels (for per-class routing plots).
    pub assignments: bool,
    /// Accuracy, dropped tokens and FLOPs at inference capacities of their own.
    pub inference_capacity: InferenceCapacity,
}

/// V-MoE's inference-capacity evaluation: the test split (and, for a contrastive model, its
/// zero-shot datasets) scored again at each capacity factor, with and without BPR.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct InferenceCapacity {
    /// Capacity factors c of every MoE block (C = ceil(tokens * K * c / E)); none by default.
    pub factors: Vec<f64>,
    /// Batch Priority Routing on (`true`), off (`false`), or both.
    pub bpr: Vec<bool>,
}

impl Default for InferenceCapacity {
    fn default() -> InferenceCapacity {
        InferenceCapacity {
            factors: Vec::new(),
            bpr: vec![true, false],
        }
    }
}

impl InferenceCapacity {
    /// Every (factor, BPR) setting to evaluate, factor-major.
    pub fn settings(&self) -> Vec<(f64, bool)> {
        (self.factors.iter())
            .flat_map(|&factor| self.bpr.iter().map(move |&bpr| (factor, bpr)))
            .collect()
    }

    fn check(&self, at: &KeyPath, c: &mut Checker) {
        for (i, factor) in self.factors.iter().enumerate() {
            c.require(
                factor.is_finite() && *factor > 0.0,
                &at.key("factors").index(i),
                || format!("a capacity factor must be positive and finite (got {factor})"),
            );
        }
        c.require(
            self.factors.is_empty() || !self.bpr.is_empty(),
            &at.key("bpr"),
            || "give `bpr: [true]`, `[false]` or `[true, false]`".into(),
        );
    }
}

impl Default for EvalSpec {
    fn default() -> EvalSpec {
        EvalSpec {
            benchmarks: BTreeMap::new(),
            zero_shot: ZeroShot::default(),
            retrieval: Retrieval::default(),
            few_shot: FewShot::default(),
            batch_size: 256,
            assignments: true,
            inference_capacity: InferenceCapacity::default(),
        }
    }
}

/// Zero-shot classification settings.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ZeroShot {
    /// Datasets to classify: benchmark names, or sources of the training data (`synthetic`,
    /// `mnist`, ...) whose test or validation pairs are classified.
    pub datasets: Vec<String>,
    /// Prompt templates; `{}` is replaced by the class name. A benchmark may have its own.
    pub templates: Vec<String>,
}

impl Default for ZeroShot {
    fn default() -> ZeroShot {
        ZeroShot {
            datasets: vec!["synthetic".into()],
            templates: [
                "a photo of a {}.",
                "a drawing of a {}.",
                "a picture of a {}.",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

/// Retrieval settings.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Retrieval {
    /// Whether to run retrieval.
    pub enabled: bool,
    /// At most this many test pairs.
    pub max_pairs: usize,
}

impl Default for Retrieval {
    fn default() -> Retrieval {
        Retrieval {
            enabled: true,
            max_pairs: 1000,
        }
    }
}

/// Few-shot probe settings.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FewShot {
    /// Shots per class.
    pub shots: Vec<usize>,
    /// Datasets to probe, named as in `zero_shot.datasets`. A benchmark's shots are drawn
    /// from its own pairs and the rest score the probe; a training source's shots come from
    /// its train split and its test split scores them.
    pub datasets: Vec<String>,
    /// The image features the probe fits.
    pub features: ProbeFeatures,
}

/// Which image features a few-shot probe fits.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ProbeFeatures {
    /// The pooled encoder output before the projection head (vmoe's pre-logits).
    #[default]
    PreLogits,
    /// The unit-normalised joint embedding that zero-shot and retrieval compare.
    Embedding,
}

impl Default for FewShot {
    fn default() -> FewShot {
        FewShot {
            shots: vec![1, 5, 10, 25],
            datasets: vec!["synthetic".into()],
            features: ProbeFeatures::default(),
        }
    }
}

impl EvalSpec {
    pub(super) fn check(&self, at: &KeyPath, c: &mut Checker) {
        for (name, benchmark) in &self.benchmarks {
            benchmark.check(name, &at.key("benchmarks").key(name), c);
        }
        self.zero_shot.check(&at.key("zero_shot"), c);
        for (i, shots) in self.few_shot.shots.iter().enumerate() {
            c.require(
                *shots >= 1,
                &at.key("few_shot").key("shots").index(i),
                || "shots must be at least 1".into(),
            );
        }
        c.at_least_one(at, &[("batch_size", self.batch_size)]);
        self.retrieval.check(&at.key("retrieval"), c);
        self.inference_capacity
            .check(&at.key("inference_capacity"), c);
    }
}

impl ZeroShot {
    pub(super) fn check(&self, at: &KeyPath, c: &mut Checker) {
        check_templates(&self.templates, &at.key("templates"), c);
    }
}

/// Checks that every template has the `{}` the class name replaces.
pub(super) fn check_templates(templates: &[String], at: &KeyPath, c: &mut Checker) {
    for (i, template) in templates.iter().enumerate() {
        if !template.contains("{}") {
            c.error(
                &at.index(i),
                format!("template `{template}` has no `{{}}` for the class name"),
                Some("write e.g. `a photo of a {}.`".into()),
            );
        }
    }
}

/// The most pairs retrieval ranks at once: it scores every image against every text, an
/// n x n matrix of f64 (2 GiB at 16384), while the usual benchmarks have 1000 (Flickr30k)
/// to 5000 (COCO) test pairs.
const MAX_RETRIEVAL_PAIRS: usize = 16_384;

impl Retrieval {
    pub(super) fn check(&self, at: &KeyPath, c: &mut Checker) {
        c.require(self.max_pairs >= 2, &at.key("max_pairs"), || {
            "retrieval needs at least 2 pairs".into()
        });
        if self.max_pairs > MAX_RETRIEVAL_PAIRS {
            c.error(
                &at.key("max_pairs"),
                format!(
                    "{} pairs is over the limit of {MAX_RETRIEVAL_PAIRS}: retrieval scores \
                     every image against every text",
                    self.max_pairs
                ),
                Some(format!("set `max_pairs` to at most {MAX_RETRIEVAL_PAIRS}")),
            );
        }
    }
}

/// Checks the dataset names of the zero-shot and few-shot lists: the final evaluation's may
/// name a benchmark or a training source, the periodic one's only a training source (training
/// never reads the benchmarks, so that changing one never retrains). Lists left at their
/// default are not checked: the evaluation skips a default dataset the data lacks.
pub(super) fn check_dataset_names(spec: &Spec, c: &mut Checker) {
    let sources: Vec<&str> = spec.data.sources.iter().map(|s| s.name()).collect();
    let benchmarks: Vec<&str> = spec.eval.benchmarks.keys().map(String::as_str).collect();
    let root = KeyPath::root();
    for name in benchmarks.iter().filter(|b| sources.contains(b)) {
        c.error(
            &root.key("eval").key("benchmarks").key(name),
            format!("benchmark `{name}` has the name of a source of the training data"),
            Some(format!("rename the benchmark (e.g. `{name}_heldout`)")),
        );
    }
    // A classifier classifies with its own head: its zero-shot lists (defaults a resolved
    // spec writes out) are never read, so they are not checked.
    let zero_shot_read = !spec.model.arch.is_classifier();
    let lists = [
        (
            root.key("eval").key("zero_shot"),
            &spec.eval.zero_shot.datasets,
            true,
            zero_shot_read,
        ),
        (
            root.key("eval").key("few_shot"),
            &spec.eval.few_shot.datasets,
            true,
            true,
        ),
        (
            root.key("train").key("monitor").key("zero_shot"),
            &spec.train.monitor.zero_shot.datasets,
            false,
            zero_shot_read,
        ),
    ];
    let read = lists.into_iter().filter(|(.., read)| *read);
    for (at, datasets, final_eval, _) in read {
        let at = at.key("datasets");
        if !c.is_written(&at) {
            continue;
        }
        for (i, name) in datasets.iter().enumerate() {
            let name = name.as_str();
            if sources.contains(&name) || (final_eval && benchmarks.contains(&name)) {
                continue;
            }
            if benchmarks.contains(&name) {
                c.error(
                    &at.index(i),
                    format!(
                        "`{name}` is a benchmark; the periodic evaluation during training \
                         scores training sources only"
                    ),
                    Some("list it under `eval.zero_shot.datasets` instead".into()),
                );
                continue;
            }
            let known = sources
                .iter()
                .chain(benchmarks.iter().filter(|_| final_eval));
            let hint = match did_you_mean(name, known.clone().copied()) {
                Some(hint) => hint,
                None => format!(
                    "name a benchmark of `eval.benchmarks` or a source of `data.sources` ({})",
                    known.copied().collect::<Vec<_>>().join(", ")
                ),
            };
            c.error(
                &at.index(i),
                format!("`{name}` is neither a benchmark nor a source of the training data"),
                Some(hint),
            );
        }
    }
}
