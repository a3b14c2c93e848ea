//! The `train` and `eval` stage kinds.

use anyhow::Context;
use limoe_core::records::{CLASSES_FILE, EvalSummary, SUMMARY_FILE, write_record};
use limoe_core::spec::{Section, Spec};
use limoe_core::{Stage, StageContext};
use limoe_data::shards::INDEX;
use limoe_data::split::Split;

use crate::checkpoint;
use crate::embed::{EmbedRequest, embed_split};
use crate::evaluate::{ZeroShotSetup, class_names, few_shot_rows, retrieval_rows, zero_shot_rows};
use crate::inputs::input_holding;
use crate::logs::RunLogs;
use crate::routing_log::RoutingTally;
use crate::trainer::{CHECKPOINTS, build, check_fits, train};

/// Test pairs embedded for zero-shot classification and the probes' test set.
const EVAL_PAIRS: usize = 10_000;
/// Training pairs embedded as the few-shot probes' pool.
const PROBE_POOL_PAIRS: usize = 5_000;

/// The spec sections training and evaluation depend on (evaluation rebuilds the model and
/// the device from the model and train sections; training evaluates periodically).
const READS: &[Section] = &[
    Section::Seed,
    Section::Data,
    Section::Model,
    Section::Train,
    Section::Eval,
];

/// The `train` stage kind: trains the spec's model on an ingest output.
pub struct TrainStage;

impl Stage for TrainStage {
    fn kind(&self) -> &'static str {
        "train"
    }

    fn about(&self) -> &'static str {
        "trains the model on an ingest output: metrics/routing/eval logs, checkpoints, resume"
    }

    fn reads(&self) -> &'static [Section] {
        READS
    }

    fn preflight(&self, spec: &Spec) -> anyhow::Result<()> {
        check_fits(spec)
    }

    fn resumable(&self) -> bool {
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
        "eval"
    }

    fn about(&self) -> &'static str {
        "scores the trained model on the test split: zero-shot, retrieval, few-shot, assignments"
    }

    fn reads(&self) -> &'static [Section] {
        READS
    }

    fn run(&self, ctx: &StageContext) -> anyhow::Result<()> {
        let spec = ctx.spec;
        let eval = &spec.eval;
        let data_dir = input_holding(ctx, INDEX, "an ingest")?;
        let checkpoints = input_holding(ctx, CHECKPOINTS, "a train")?.join(CHECKPOINTS);
        let built = build(spec)?;
        let last = checkpoint::latest(&checkpoints)?
            .with_context(|| format!("no complete checkpoint in {}", checkpoints.display()))?;
        checkpoint::load_params(&last.path, &built.vars)?;
        let step = last.step as i64;

        let embed =
            |split, limit, assignments_step, tally: &mut RoutingTally, rows: &mut Vec<_>| {
                let request = EmbedRequest {
                    dir: &data_dir,
                    split,
                    limit: Some(limit),
                    batch_size: eval.batch_size,
                    preprocess: &built.preprocess,
                    assignments_step,
                };
                embed_split(&built.model, &built.device, &request, tally, rows)
            };
        let mut tally = RoutingTally::default();
        let mut assignments = Vec::new();
        let test = embed(
            Split::Test,
            EVAL_PAIRS,
            eval.assignments.then_some(step),
            &mut tally,
            &mut assignments,
        )?;
        let setup = ZeroShotSetup {
            model: &built.model,
            device: &built.device,
            preprocess: &built.preprocess,
            templates: &eval.zero_shot.templates,
            batch_size: eval.batch_size,
        };
        let mut rows = zero_shot_rows(&setup, &test, &eval.zero_shot.datasets, step)?;
        if eval.retrieval.enabled {
            rows.extend(retrieval_rows(&test.first(eval.retrieval.max_pairs), step)?);
        }
        if !eval.few_shot.shots.is_empty() && !eval.few_shot.datasets.is_empty() {
            let pool = embed(
                Split::Train,
                PROBE_POOL_PAIRS,
                None,
                &mut RoutingTally::default(),
                &mut Vec::new(),
            )?;
            rows.extend(few_shot_rows(
                &pool,
                &test,
                &eval.few_shot.datasets,
                &eval.few_shot.shots,
                spec.seed,
                step,
            )?);
        }

        let summary: EvalSummary = rows
            .iter()
            .map(|r| (format!("{}/{}", r.dataset, r.metric), r.value))
            .collect();
        for (name, value) in &summary {
            tracing::info!("eval: {name} = {value:.4}");
        }
        let mut logs = RunLogs::create(ctx.out_dir)?;
        logs.eval.extend(rows);
        logs.routing.extend(tally.rows(step, "test"));
        logs.assignments.extend(assignments);
        logs.flush()?;
        write_record(ctx.out_dir, SUMMARY_FILE, &summary)?;
        write_record(
            ctx.out_dir,
            CLASSES_FILE,
            &class_names(&test, &eval.zero_shot.datasets),
        )?;
        Ok(())
    }
}
