//! The `train` section: optimisation and checkpointing.

use serde::{Deserialize, Serialize};

use super::Spec;
use super::check::Checker;
use super::diagnostic::did_you_mean;
use super::eval::{Retrieval, ZeroShot};
use super::path::KeyPath;
use crate::logs::eval_metrics::{
    ALL_DATASETS, CLASSIFICATION, RETRIEVAL_DIRECTIONS, RETRIEVAL_MEASURES, RETRIEVAL_PAIRS,
    ZERO_SHOT, metric_key, retrieval_metric,
};
use crate::logs::metrics;

/// Keys that say how training is placed on devices, not what it computes: they are left out
/// of every cache key, as the number of ranks is.
pub const PLACEMENT_KEYS: &[&str] = &["train.expert_parallel"];

fn is_one(value: &usize) -> bool {
    *value == 1
}

/// Learning-rate schedule after the linear warmup.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// Cosine decay to `min_lr`.
    #[default]
    Cosine,
    /// Reciprocal square root, with a linear cooldown over `cooldown_steps`.
    Rsqrt,
    /// Constant after warmup.
    Constant,
}

/// Where training and evaluation run.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Device {
    /// The CPU.
    #[default]
    Cpu,
    /// The first CUDA GPU (a build with `--features cuda`).
    Cuda,
}

/// The number format training computes in.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// Everything in f32.
    #[default]
    F32,
    /// Mixed precision: f32 master weights and optimizer state; bf16 matmuls and
    /// activations; f32 for the layer norms' statistics, the router softmax and the losses.
    Bf16,
}

impl Precision {
    fn is_f32(&self) -> bool {
        *self == Precision::F32
    }

    /// The value as a spec writes it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }
}

/// Which way a metric improves.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Goal {
    /// Smaller is better (a loss).
    #[default]
    Lower,
    /// Larger is better (an accuracy).
    Higher,
}

/// The metric that picks the best checkpoint, which is kept besides the newest ones.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct BestBy {
    /// `loss` (the step's training loss) or a periodic-evaluation metric as
    /// `<dataset>/<metric>`, e.g. `synthetic/zero_shot_top1` or `all/retrieval_i2t_r1`.
    pub metric: String,
    /// Whether lower or higher is better.
    pub goal: Goal,
}

impl Default for BestBy {
    fn default() -> BestBy {
        BestBy {
            metric: metrics::LOSS.into(),
            goal: Goal::Lower,
        }
    }
}

/// The evaluation during training, every `eval_every` steps on validation pairs: the eval
/// curves of the run's logs, and what a `best.metric` other than `loss` is measured with.
/// It has settings of its own so that changing the final evaluation (`eval`) never changes
/// what training does, and so never retrains.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Monitor {
    /// Validation pairs embedded at each evaluation.
    pub pairs: usize,
    /// Zero-shot classification.
    pub zero_shot: ZeroShot,
    /// Image-text retrieval.
    pub retrieval: Retrieval,
    /// Pairs per evaluation batch.
    pub batch_size: usize,
}

impl Monitor {
    /// The `<dataset>/<metric>` names each periodic evaluation writes: the zero-shot metrics
    /// of every dataset it classifies, and retrieval's when that is enabled; a `classifier`'s
    /// own top-1 instead.
    pub fn metric_keys(&self, classifier: bool) -> Vec<String> {
        if classifier {
            return CLASSIFICATION
                .map(|metric| metric_key(ALL_DATASETS, metric))
                .to_vec();
        }
        let zero_shot = (self.zero_shot.datasets.iter())
            .flat_map(|dataset| ZERO_SHOT.map(|metric| metric_key(dataset, metric)));
        let retrieval = RETRIEVAL_DIRECTIONS
            .into_iter()
            .flat_map(|direction| RETRIEVAL_MEASURES.map(|m| retrieval_metric(direction, m)))
            .chain([RETRIEVAL_PAIRS.to_owned()])
            .map(|metric| metric_key(ALL_DATASETS, &metric))
            .filter(|_| self.retrieval.enabled);
        zero_shot.chain(retrieval).collect()
    }
}

impl Default for Monitor {
    fn default() -> Monitor {
        Monitor {
            pairs: 512,
            zero_shot: ZeroShot::default(),
            retrieval: Retrieval::default(),
            batch_size: 256,
        }
    }
}

/// The whole `train` section.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TrainSpec {
    /// Optimiser steps.
    pub steps: usize,
    /// Pairs per step (over all accumulation micro-batches).
    pub batch_size: usize,
    /// Micro-batches accumulated per step; must divide `batch_size`.
    pub accumulation: usize,
    /// Ranks that share one copy of the experts (expert parallelism): each of a group of
    /// this many ranks holds `moe.experts / expert_parallel` experts of every MoE block.
    /// Where work is placed, not what is computed: no part of any cache key
    /// ([`PLACEMENT_KEYS`]), so a run resumes under another value.
    #[serde(skip_serializing_if = "is_one")]
    pub expert_parallel: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Final learning rate of the decay.
    pub min_lr: f64,
    /// Linear warmup steps.
    pub warmup_steps: usize,
    /// Decay after warmup.
    pub schedule: Schedule,
    /// Linear cooldown at the end (rsqrt schedule).
    pub cooldown_steps: usize,
    /// AdamW decoupled weight decay (not applied to norms, biases, embeddings).
    pub weight_decay: f64,
    /// Clip gradients to this global norm (none when left out).
    pub grad_clip: Option<f64>,
    /// Log routing statistics every this many steps (metrics are logged every step).
    pub log_every: usize,
    /// Evaluate every this many steps (see `monitor`).
    pub eval_every: usize,
    /// What the periodic evaluation measures.
    pub monitor: Monitor,
    /// Checkpoint every this many steps.
    pub checkpoint_every: usize,
    /// Checkpoints to keep (besides the best).
    pub keep_checkpoints: usize,
    /// The metric that picks the best checkpoint.
    pub best: BestBy,
    /// cpu or cuda.
    pub device: Device,
    /// f32 or bf16 (mixed precision, for accelerators). Left out of cache keys at f32, its
    /// default, so that specs written before it keep theirs.
    #[serde(skip_serializing_if = "Precision::is_f32")]
    pub precision: Precision,
}

impl Default for TrainSpec {
    fn default() -> TrainSpec {
        TrainSpec {
            steps: 300,
            batch_size: 64,
            accumulation: 1,
            expert_parallel: 1,
            lr: 1e-3,
            min_lr: 1e-5,
            warmup_steps: 30,
            schedule: Schedule::Cosine,
            cooldown_steps: 0,
            weight_decay: 0.1,
            grad_clip: Some(1.0),
            log_every: 10,
            eval_every: 100,
            monitor: Monitor::default(),
            checkpoint_every: 100,
            keep_checkpoints: 2,
            best: BestBy::default(),
            device: Device::Cpu,
            precision: Precision::F32,
        }
    }
}

/// `train.expert_parallel` splits every MoE block's experts evenly over a group of ranks: the
/// model must have MoE blocks, and their expert count must be a multiple of it.
pub(super) fn check_expert_parallel(spec: &Spec, c: &mut Checker) {
    let parts = spec.train.expert_parallel;
    if parts <= 1 {
        return;
    }
    let at = KeyPath::root().key("train").key("expert_parallel");
    if spec.model.active_moe_blocks().is_empty() {
        c.error(
            &at,
            format!("expert_parallel {parts} shards experts, and this model.arch has none"),
            Some("remove train.expert_parallel, or use model.arch: limoe".into()),
        );
    } else if !spec.model.moe.experts.is_multiple_of(parts) {
        c.error(
            &at,
            format!(
                "expert_parallel {parts} does not divide model.moe.experts {}",
                spec.model.moe.experts
            ),
            Some("pick a divisor of model.moe.experts".into()),
        );
    }
}

impl TrainSpec {
    pub(super) fn check(&self, at: &KeyPath, classifier: bool, c: &mut Checker) {
        c.at_least_one(
            at,
            &[
                ("steps", self.steps),
                ("batch_size", self.batch_size),
                ("accumulation", self.accumulation),
                ("expert_parallel", self.expert_parallel),
                ("log_every", self.log_every),
                ("eval_every", self.eval_every),
                ("checkpoint_every", self.checkpoint_every),
                ("keep_checkpoints", self.keep_checkpoints),
            ],
        );
        let monitor = at.key("monitor");
        c.at_least_one(
            &monitor,
            &[
                ("pairs", self.monitor.pairs),
                ("batch_size", self.monitor.batch_size),
            ],
        );
        self.monitor.zero_shot.check(&monitor.key("zero_shot"), c);
        self.monitor.retrieval.check(&monitor.key("retrieval"), c);
        if self.accumulation >= 1 && !self.batch_size.is_multiple_of(self.accumulation) {
            c.error(
                &at.key("accumulation"),
                format!(
                    "accumulation {} does not divide batch_size {}",
                    self.accumulation, self.batch_size
                ),
                Some("pick a divisor of batch_size".into()),
            );
        }
        c.require(
            self.lr > 0.0 && self.min_lr >= 0.0 && self.min_lr <= self.lr,
            &at.key("lr"),
            || {
                format!(
                    "need 0 <= min_lr ({}) <= lr ({}), lr > 0",
                    self.min_lr, self.lr
                )
            },
        );
        c.require(
            self.steps == 0 || self.warmup_steps + self.cooldown_steps <= self.steps,
            &at.key("warmup_steps"),
            || {
                format!(
                    "warmup ({}) and cooldown ({}) steps exceed the {} training steps",
                    self.warmup_steps, self.cooldown_steps, self.steps
                )
            },
        );
        self.check_best(&at.key("best").key("metric"), classifier, c);
        c.require(self.weight_decay >= 0.0, &at.key("weight_decay"), || {
            "`weight_decay` must be zero or positive".into()
        });
        if let Some(clip) = self.grad_clip {
            c.require(clip > 0.0, &at.key("grad_clip"), || {
                "`grad_clip` must be positive (write `grad_clip: null` to switch clipping off)"
                    .into()
            });
        }
    }

    /// `best.metric` must be one the run records at its checkpoints: the step's loss or a
    /// metric of the periodic evaluation; any other would never pick a checkpoint.
    fn check_best(&self, at: &KeyPath, classifier: bool, c: &mut Checker) {
        let metric = &self.best.metric;
        let known: Vec<String> = std::iter::once(metrics::LOSS.to_owned())
            .chain(self.monitor.metric_keys(classifier))
            .collect();
        if known.contains(metric) {
            return;
        }
        let hint = did_you_mean(metric, known.iter().map(String::as_str))
            .unwrap_or_else(|| format!("this run records: {}", known.join(", ")));
        c.error(
            at,
            format!(
                "`{metric}` is not a metric this run records: it records `{}` and what \
                 `train.monitor` evaluates (its zero-shot datasets, and retrieval)",
                metrics::LOSS
            ),
            Some(hint),
        );
    }
}
