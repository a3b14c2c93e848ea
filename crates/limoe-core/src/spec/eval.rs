//! The `eval` section: zero-shot classification, retrieval, few-shot probes.

use serde::{Deserialize, Serialize};

use super::check::Checker;
use super::path::KeyPath;

/// A labelled dataset for zero-shot and few-shot evaluation.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EvalDataset {
    /// The synthetic shapes' labels.
    Synthetic,
    /// Emoji categories.
    Emoji,
    /// Tux Paint stamp categories.
    Tuxpaint,
    /// Fashion-MNIST classes.
    FashionMnist,
    /// MNIST digits.
    Mnist,
}

impl EvalDataset {
    /// The name as written in a spec; pairs of this dataset have keys starting with it.
    pub fn name(self) -> &'static str {
        match self {
            EvalDataset::Synthetic => "synthetic",
            EvalDataset::Emoji => "emoji",
            EvalDataset::Tuxpaint => "tuxpaint",
            EvalDataset::FashionMnist => "fashion_mnist",
            EvalDataset::Mnist => "mnist",
        }
    }
}

/// The whole `eval` section.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EvalSpec {
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
}

impl Default for EvalSpec {
    fn default() -> EvalSpec {
        EvalSpec {
            zero_shot: ZeroShot::default(),
            retrieval: Retrieval::default(),
            few_shot: FewShot::default(),
            batch_size: 256,
            assignments: true,
        }
    }
}

/// Zero-shot classification settings.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ZeroShot {
    /// Datasets to classify.
    pub datasets: Vec<EvalDataset>,
    /// Prompt templates; `{}` is replaced by the class name.
    pub templates: Vec<String>,
}

impl Default for ZeroShot {
    fn default() -> ZeroShot {
        ZeroShot {
            datasets: vec![EvalDataset::Synthetic],
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
    /// Datasets to probe.
    pub datasets: Vec<EvalDataset>,
}

impl Default for FewShot {
    fn default() -> FewShot {
        FewShot {
            shots: vec![1, 5, 10, 25],
            datasets: vec![EvalDataset::Synthetic],
        }
    }
}

impl EvalSpec {
    pub(super) fn check(&self, at: &KeyPath, c: &mut Checker) {
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
    }
}

impl ZeroShot {
    pub(super) fn check(&self, at: &KeyPath, c: &mut Checker) {
        for (i, template) in self.templates.iter().enumerate() {
            if !template.contains("{}") {
                c.error(
                    &at.key("templates").index(i),
                    format!("template `{template}` has no `{{}}` for the class name"),
                    Some("write e.g. `a photo of a {}.`".into()),
                );
            }
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
