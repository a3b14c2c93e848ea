//! The `finetune` stage kind: V-MoE's transfer to a downstream labelled set. The image side
//! of a train stage's model (a V-MoE or ViT, or a contrastive model's image encoder) gets a
//! new classification head and trains on a benchmark's train split, every parameter
//! (`mode: full`) or the head alone on frozen pre-logits (`mode: head`, V-MoE's linear
//! transfer); its top-1 accuracy on the benchmark's test split is the result.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use limoe_core::kinds::{BENCHMARKS, FINETUNE, TRAIN};
use limoe_core::logs::eval_metrics::ALL_DATASETS;
use limoe_core::records::{EvalSummary, SUMMARY_FILE, write_record};
use limoe_core::spec::{
    BestBy, Diagnostic, KeyPath, Node, Schedule, Spec, TrainSpec, deserialize_all,
};
use limoe_core::{Stage, StageContext};
use limoe_data::split::Split;
use limoe_model::moe::RouteMode;
use serde::Deserialize;

use crate::checkpoint;
use crate::classes::ClassIndex;
use crate::model_build::build;
use crate::suite::Suite;
use crate::trainer::{CHECKPOINTS, Start, train_from};

/// Test pairs of the benchmark scored at the end.
const TEST_PAIRS: usize = 10_000;

/// Which parameters a transfer trains.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Every parameter (V-MoE's fine-tuning).
    Full,
    /// A new head on the frozen network's pre-logits (V-MoE's linear transfer).
    Head,
}

/// A finetune stage's `with:` settings; the optimisation settings left out are the train
/// section's.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FinetuneSettings {
    /// The benchmark (`eval.benchmarks.NAME`, with `splits`) trained on and scored.
    pub dataset: String,
    /// `full` or `head`.
    pub mode: Mode,
    /// Optimiser steps.
    pub steps: usize,
    /// Peak learning rate.
    #[serde(default)]
    pub lr: Option<f64>,
    /// Final learning rate of the decay.
    #[serde(default)]
    pub min_lr: Option<f64>,
    /// Linear warmup steps.
    #[serde(default)]
    pub warmup_steps: Option<usize>,
    /// Decay after warmup.
    #[serde(default)]
    pub schedule: Option<Schedule>,
    /// Examples per step.
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// AdamW weight decay.
    #[serde(default)]
    pub weight_decay: Option<f64>,
    /// Validation top-1 every this many steps (by default at the end only).
    #[serde(default)]
    pub eval_every: Option<usize>,
    /// Checkpoint every this many steps (by default at the end only).
    #[serde(default)]
    pub checkpoint_every: Option<usize>,
}

impl FinetuneSettings {
    /// The settings of `with`, or every problem with them (paths under `at`).
    fn parse(with: &Node, at: &KeyPath) -> Result<FinetuneSettings, Vec<Diagnostic>> {
        deserialize_all(with, at)
    }

    /// The settings of an already checked spec.
    fn of(with: &Node) -> anyhow::Result<FinetuneSettings> {
        FinetuneSettings::parse(with, &KeyPath::root())
            .map_err(|d| anyhow::anyhow!("invalid finetune settings: {}", d[0].message))
    }

    /// The problems the spec can show before anything runs.
    fn problems(&self, with: &Node, at: &KeyPath, spec: &Spec) -> Vec<Diagnostic> {
        let mut problems = Vec::new();
        let mut problem = |key: &str, message: String, hint: &str| {
            let here = KeyPath::root().key(key);
            problems.push(
                Diagnostic::new(at.concat(&here), with.origin_of(&here), message).with_hint(hint),
            );
        };
        match spec.eval.benchmarks.get(&self.dataset) {
            None => problem(
                "dataset",
                format!("`{}` is not one of eval.benchmarks", self.dataset),
                "declare the transfer set under eval.benchmarks, with `splits`",
            ),
            Some(benchmark) if benchmark.splits.is_none() => problem(
                "dataset",
                format!(
                    "benchmark `{}` is all test pairs, so there is nothing to train on",
                    self.dataset
                ),
                "give it `splits: {val: 0.1, test: 0.2}`: the rest is its train split",
            ),
            Some(_) => {}
        }
        if spec.model.arch.image_classifier().is_none() {
            problem(
                "mode",
                "a two-tower model's image encoder has parameters of its own names, which a \
                 classifier does not read"
                    .into(),
                "transfer a limoe, dense, vmoe or vit model",
            );
        }
        for (key, value) in [
            ("steps", Some(self.steps)),
            ("batch_size", self.batch_size),
            ("eval_every", self.eval_every),
            ("checkpoint_every", self.checkpoint_every),
        ] {
            if value == Some(0) {
                problem(key, format!("`{key}` must be at least 1"), "use 1 or more");
            }
        }
        problems
    }

    /// The train section of the transfer: these settings over the spec's own.
    fn train_section(&self, spec: &TrainSpec) -> TrainSpec {
        TrainSpec {
            steps: self.steps,
            batch_size: self.batch_size.unwrap_or(spec.batch_size),
            accumulation: 1,
            lr: self.lr.unwrap_or(spec.lr),
            min_lr: self.min_lr.unwrap_or(spec.min_lr),
            warmup_steps: self.warmup_steps.unwrap_or(spec.warmup_steps),
            schedule: self.schedule.unwrap_or(spec.schedule),
            cooldown_steps: 0,
            weight_decay: self.weight_decay.unwrap_or(spec.weight_decay),
            eval_every: self.eval_every.unwrap_or(self.steps),
            checkpoint_every: self.checkpoint_every.unwrap_or(self.steps),
            best: BestBy::default(),
            ..spec.clone()
        }
    }
}

/// The `finetune` stage kind.
pub struct FinetuneStage;

impl Stage for FinetuneStage {
    fn kind(&self) -> &'static str {
        FINETUNE
    }

    fn about(&self) -> &'static str {
        "transfers a trained model's image side to a labelled benchmark (with: dataset, mode \
         full|head, steps, lr, ...): top-1 on its test split"
    }

    /// The model it starts from and the training settings it inherits; the benchmark's
    /// pairs come with the benchmarks output's key.
    fn reads(&self) -> &'static [&'static str] {
        &["seed", "model", "train", "data.shuffle_buffer"]
    }

    fn needs_kinds(&self, _spec: &Spec) -> Vec<&'static str> {
        vec![TRAIN, BENCHMARKS]
    }

    fn check(&self, with: &Node, at: &KeyPath, spec: &Spec) -> Vec<Diagnostic> {
        match FinetuneSettings::parse(with, at) {
            Ok(settings) => settings.problems(with, at, spec),
            Err(problems) => problems,
        }
    }

    fn resumable(&self) -> bool {
        true
    }

    fn run(&self, ctx: &StageContext) -> anyhow::Result<()> {
        let settings = FinetuneSettings::of(&ctx.stage.with)?;
        let spec = ctx.spec;
        let data_dir = ctx.input(BENCHMARKS)?.dir.join(&settings.dataset);
        let pretrained = ctx.input(TRAIN)?.dir.join(CHECKPOINTS);
        let start = checkpoint::latest(&pretrained)?
            .with_context(|| format!("no complete checkpoint in {}", pretrained.display()))?;
        let labels = ClassIndex::read(&data_dir)?;
        let classes = labels.len();
        let Some(model) = spec.model.image_classifier(classes) else {
            bail!("a two-tower model's image side cannot be transferred");
        };
        let transfer = Spec {
            model,
            train: settings.train_section(&spec.train),
            ..spec.clone()
        };
        let job = StageContext {
            spec: &transfer,
            ..*ctx
        };
        tracing::info!(
            "finetune: {:?} transfer of step {} to `{}` ({classes} classes), {} steps",
            settings.mode,
            start.step,
            settings.dataset,
            settings.steps
        );
        train_from(
            &job,
            &data_dir,
            &Start {
                from: Some(&start.path),
                head_only: settings.mode == Mode::Head,
            },
        )?;
        score(&transfer, ctx, &data_dir, &settings.dataset, &labels)
    }
}

/// The transferred model's top-1 on the benchmark's test split, as the stage's summary
/// (`<dataset>/top1`).
fn score(
    transfer: &Spec,
    ctx: &StageContext,
    data_dir: &std::path::Path,
    dataset: &str,
    labels: &ClassIndex,
) -> anyhow::Result<()> {
    let built = build(transfer)?;
    let checkpoints = ctx.out_dir.join(CHECKPOINTS);
    let last = checkpoint::latest(&checkpoints)?
        .with_context(|| format!("no complete checkpoint in {}", checkpoints.display()))?;
    checkpoint::load_params(&last.path, &built.vars)?;
    let suite = Suite {
        labels: Some(labels),
        mode: RouteMode::Eval,
        split: Split::Test,
        pairs: TEST_PAIRS,
        batch_size: transfer.eval.batch_size,
        zero_shot: &transfer.eval.zero_shot,
        retrieval: &transfer.eval.retrieval,
        few_shot: None,
        assignments: false,
        benchmarks: BTreeMap::new(),
        data_name: dataset.to_owned(),
    };
    let result = suite.run(&built, data_dir, last.step as i64)?;
    let mut rows = result.rows;
    for row in rows.iter_mut().filter(|r| r.dataset == ALL_DATASETS) {
        row.dataset = dataset.to_owned();
    }
    let summary: EvalSummary = rows.iter().map(|r| (r.key(), r.value)).collect();
    for (name, value) in &summary {
        tracing::info!("finetune: {name} = {value:.4}");
    }
    write_record(ctx.out_dir, SUMMARY_FILE, &summary)
}
