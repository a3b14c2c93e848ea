//! The `train` and `eval` stage kinds.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use limoe_core::kinds::{BENCHMARKS, EVAL, INGEST, TRAIN};
use limoe_core::logs::EvalRow;
use limoe_core::logs::eval_metrics::{ALL_DATASETS, GFLOPS};
use limoe_core::records::{CLASSES_FILE, EvalSummary, SUMMARY_FILE, write_record};
use limoe_core::spec::{Node, Spec};
use limoe_core::{Stage, StageContext};
use limoe_data::split::Split;
use limoe_model::moe::RouteMode;

use crate::capacity::{Spent, capacity_rows};
use crate::checkpoint;
use crate::classes::ClassIndex;
use crate::clip_benchmark::{ClipBenchmarkResult, write_results};
use crate::logs::RunLogs;
use crate::model_build::{build, check_fits};
use crate::suite::{Probes, Suite};
use crate::trainer::{CHECKPOINTS, train};

/// Test pairs embedded for zero-shot classification and the probes' test set.
const EVAL_PAIRS: usize = 10_000;

/// Bumped whenever training computes something different for the same spec (2: the logit
/// scale clamped as a parameter after each step, no weight decay on the experts' biases), so
/// that outputs of older builds are not reused from the cache.
const TRAINING_FORMAT: u32 = 2;

/// The `train` stage kind: trains the spec's model on an ingest output.
pub struct TrainStage;

impl Stage for TrainStage {
    fn kind(&self) -> &'static str {
        TRAIN
    }

    fn about(&self) -> &'static str {
        "trains the model on an ingest output: metrics/routing/eval logs, checkpoints, resume"
    }

    /// The model and optimisation (`train`, with the periodic evaluation's `train.monitor`),
    /// and the loader's shuffle buffer; the data itself comes with the ingest output's key.
    fn reads(&self) -> &'static [&'static str] {
        &["seed", "model", "train", "data.shuffle_buffer"]
    }

    fn needs_kinds(&self, _spec: &Spec) -> Vec<&'static str> {
        vec![INGEST]
    }

    fn fingerprint(&self, _with: &Node, _spec: &Spec) -> anyhow::Result<serde_json::Value> {
        Ok(serde_json::json!({ "training_format": TRAINING_FORMAT }))
    }

    fn preflight(&self, spec: &Spec) -> anyhow::Result<()> {
        check_fits(spec)
    }

    fn resumable(&self) -> bool {
        true
    }

    fn distributed(&self) -> bool {
        true
    }

    fn run(&self, ctx: &StageContext) -> anyhow::Result<()> {
        train(ctx)
    }
}

/// The `eval` stage kind: zero-shot, retrieval and few-shot scores of the last checkpoint.
pub struct EvalStage;

impl Stage for EvalStage {
    fn kind(&self) -> &'static str {
        EVAL
    }

    fn about(&self) -> &'static str {
        "scores the trained model on the test split: zero-shot (a classifier: top-1), retrieval, \
         few-shot, assignments, inference capacities"
    }

    /// The shape and device of the model it loads, the evaluation's settings, and the seed
    /// (which draws the few-shot probes' shots); the weights come with the train output's key.
    fn reads(&self) -> &'static [&'static str] {
        &["seed", "model", "train.device", "eval"]
    }

    /// The benchmarks' output too when the spec has benchmarks.
    fn needs_kinds(&self, spec: &Spec) -> Vec<&'static str> {
        let benchmarks = (!spec.eval.benchmarks.is_empty()).then_some(BENCHMARKS);
        [TRAIN, INGEST].into_iter().chain(benchmarks).collect()
    }

    fn run(&self, ctx: &StageContext) -> anyhow::Result<()> {
        let spec = ctx.spec;
        let eval = &spec.eval;
        let data_dir = &ctx.input(INGEST)?.dir;
        let checkpoints = ctx.input(TRAIN)?.dir.join(CHECKPOINTS);
        let built = build(spec)?;
        let last = checkpoint::latest(&checkpoints)?
            .with_context(|| format!("no complete checkpoint in {}", checkpoints.display()))?;
        checkpoint::load_params(&last.path, &built.vars)?;
        let step = last.step as i64;
        let labels = ClassIndex::of_model(&spec.model, data_dir)?;

        let suite = Suite {
            labels: labels.as_ref(),
            mode: RouteMode::Eval,
            split: Split::Test,
            pairs: EVAL_PAIRS,
            batch_size: eval.batch_size,
            zero_shot: &eval.zero_shot,
            retrieval: &eval.retrieval,
            few_shot: Some(Probes {
                settings: &eval.few_shot,
                seed: spec.seed,
            }),
            assignments: eval.assignments,
            benchmarks: benchmark_dirs(ctx),
            data_name: spec.data.name(),
        };
        let result = suite.run(&built, data_dir, step)?;
        let spent = EvalRow {
            step,
            dataset: ALL_DATASETS.to_owned(),
            metric: GFLOPS.to_owned(),
            value: Spent::of(&result.routing).flops_per_example(&spec.model) / 1e9,
        };
        let settings = eval.inference_capacity.settings();
        let capped = capacity_rows(&suite, &built, data_dir, &settings, step)?;
        let rows: Vec<_> = (result.rows.into_iter())
            .chain([spent])
            .chain(capped)
            .collect();
        let summary: EvalSummary = rows.iter().map(|r| (r.key(), r.value)).collect();
        for (name, value) in &summary {
            tracing::info!("eval: {name} = {value:.4}");
        }
        let mut logs = RunLogs::create(ctx.out_dir)?;
        logs.eval.extend(rows);
        logs.routing.extend(result.routing);
        logs.assignments.extend(result.assignments);
        logs.flush()?;
        write_record(ctx.out_dir, SUMMARY_FILE, &summary)?;
        write_record(ctx.out_dir, CLASSES_FILE, &result.classes)?;
        let (model, pretrained) = (model_name(spec), format!("{}-step{step}", spec.name));
        let results: Vec<ClipBenchmarkResult> = (result.tasks.iter())
            .map(|task| ClipBenchmarkResult::new(task, &model, &pretrained))
            .collect();
        write_results(ctx.out_dir, &results)?;
        Ok(())
    }
}

/// The directory of each benchmark the `benchmarks` input wrote, by name (none without one).
fn benchmark_dirs(ctx: &StageContext) -> BTreeMap<String, PathBuf> {
    let Some(benchmarks) = ctx.optional_input(BENCHMARKS) else {
        return BTreeMap::new();
    };
    (ctx.spec.eval.benchmarks.keys())
        .map(|name| (name.clone(), benchmarks.dir.join(name)))
        .collect()
}

/// The model's name in CLIP_benchmark results, its arch and size as a spec writes them
/// (`limoe-tiny`, `dense-B`, ...).
fn model_name(spec: &Spec) -> String {
    let spelled = |value: serde_json::Result<serde_json::Value>| {
        (value.ok()).and_then(|v| v.as_str().map(str::to_owned))
    };
    let arch = spelled(serde_json::to_value(spec.model.arch));
    let size = spelled(serde_json::to_value(spec.model.size));
    format!("{}-{}", arch.unwrap_or_default(), size.unwrap_or_default())
}
