//! The training loop: streamed batches, accumulation, clipping, AdamW, periodic evaluation,
//! logs, atomic checkpoints, and exact resume from the last checkpoint.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, bail};
use candle_core::{Device, Var};
use limoe_core::logs::{MetricsRow, RoutingRow};
use limoe_core::random::splitmix64_next;
use limoe_core::records::{PLAN_FILE, write_record};
use limoe_core::spec::Spec;
use limoe_core::{StageContext, files};
use limoe_data::batch::{Batcher, Preprocess};
use limoe_data::loader::{Loader, LoaderOptions, Mode, Position};
use limoe_data::shards::INDEX;
use limoe_data::split::Split;
use limoe_model::moe::RouteMode;
use limoe_model::pool::on_pool;
use limoe_model::{Model, Params};
use serde::{Deserialize, Serialize};

use crate::budget::{available_bytes, describe, plan_record, spec_cost};
use crate::checkpoint::{self, Retention};
use crate::clip::check_and_clip;
use crate::embed::{EmbedRequest, embed_split};
use crate::evaluate::{ZeroShotSetup, retrieval_rows, zero_shot_rows};
use crate::inputs::{input_holding, preprocess, routed_counts, upload};
use crate::logs::RunLogs;
use crate::optim::{AdamW, AdamWConfig, GradAccumulator};
use crate::routing_log::{RoutingTally, aux_sums};
use crate::schedule::LrSchedule;
use crate::{device_kind, model_config};

/// Where a train stage keeps its checkpoints, inside its output directory.
pub const CHECKPOINTS: &str = "checkpoints";
/// The loader's counters (pairs read, skipped by reason) at the end of training.
pub const LOADER_COUNTERS: &str = "loader.json";
/// Batches prepared ahead of the step that needs them.
const PREFETCH: usize = 4;
/// Pairs of the validation split embedded at each periodic evaluation.
const PERIODIC_EVAL_PAIRS: usize = 512;

/// What a checkpoint stores besides weights and optimiser state.
#[derive(Serialize, Deserialize)]
struct ResumeState {
    /// The loader's position after the last batch of the checkpoint's step.
    position: Position,
    /// Seconds the run has taken so far, over all its attempts.
    wall_seconds: f64,
}

/// A model and its parameters, built for a spec on its device.
pub struct Built {
    /// The model.
    pub model: Model,
    /// Its parameters, by name.
    pub vars: Vec<(String, Var)>,
    /// The device it lives on.
    pub device: Device,
    /// Image and caption preprocessing for it.
    pub preprocess: Preprocess,
}

/// Fails, with the plan's numbers, when training the spec's model needs more memory than
/// the device has available.
pub fn check_fits(spec: &Spec) -> anyhow::Result<()> {
    let cost = spec_cost(spec);
    if let Some(free) = available_bytes(spec.train.device)
        && cost.training_bytes() > free
    {
        bail!(
            "the model does not fit, so training was not started:\n  {}",
            describe(spec, &cost, Some(free)).join("\n  ")
        );
    }
    Ok(())
}

/// Checks that training fits the device, then builds the model with seeded weights.
pub fn build(spec: &Spec) -> anyhow::Result<Built> {
    check_fits(spec)?;
    let device = limoe_model::device::open(device_kind(spec.train.device))?;
    let params = Params::new(spec.seed);
    let model = Model::new(&model_config(&spec.model), &params, &device)?;
    Ok(Built {
        model,
        vars: params.vars(),
        device,
        preprocess: preprocess(&spec.model)?,
    })
}

/// Runs (or resumes) training for the train stage of `ctx`.
pub fn train(ctx: &StageContext) -> anyhow::Result<()> {
    let spec = ctx.spec;
    let train = &spec.train;
    let data_dir = input_holding(ctx, INDEX, "an ingest")?;
    let built = build(spec)?;
    let Built {
        model,
        vars,
        device,
        preprocess,
    } = &built;
    let mut optimizer = AdamW::new(
        vars,
        AdamWConfig {
            weight_decay: train.weight_decay,
            ..AdamWConfig::default()
        },
    )?;
    let schedule = LrSchedule::from_spec(train);
    let checkpoints = ctx.out_dir.join(CHECKPOINTS);
    write_record(ctx.out_dir, PLAN_FILE, &plan_record(spec))?;

    let (first_step, position, mut wall_seconds, mut logs) = match checkpoint::latest(&checkpoints)?
    {
        Some(last) => {
            let state = checkpoint::load(&last.path, vars, &mut optimizer)?;
            let resume: ResumeState = serde_json::from_value(state.extra)
                .with_context(|| format!("{} has no loader position", last.path.display()))?;
            tracing::info!("train: resuming after step {}", state.step);
            let logs = RunLogs::resume(ctx.out_dir, state.step as i64)?;
            (state.step, Some(resume.position), resume.wall_seconds, logs)
        }
        None => (0, None, 0.0, RunLogs::create(ctx.out_dir)?),
    };
    if first_step >= train.steps as u64 {
        return Ok(());
    }
    let micro_batch = train.batch_size / train.accumulation;
    let loader = match &position {
        Some(position) => Loader::resume(&data_dir, position)?,
        None => Loader::with_mode(
            &data_dir,
            LoaderOptions {
                split: Split::Train,
                shuffle_buffer: spec.data.shuffle_buffer,
                seed: spec.seed,
                epoch: 0,
            },
            Mode::Resampled,
        )?,
    };
    let mut batches =
        Batcher::new(loader, preprocess.clone(), micro_batch, true)?.prefetch(PREFETCH)?;

    let run_started = Instant::now();
    let wall_offset = wall_seconds;
    let bar = ctx.progress.bar(train.steps as u64, "train");
    bar.set_position(first_step);
    let mut last_position = position;
    let mut accumulator = GradAccumulator::new(train.accumulation)?;
    // The latest periodic evaluation's metrics, `<dataset>/<metric>`: what picks the best
    // checkpoint besides the training loss.
    let mut latest_eval: BTreeMap<String, f64> = BTreeMap::new();
    for step in first_step + 1..=train.steps as u64 {
        let started = Instant::now();
        let lr = schedule.lr(step);
        let log_routing = step.is_multiple_of(train.log_every as u64) || step == 1;
        let mut tally = RoutingTally::default();
        let mut sums = Sums::default();
        for micro in 0..train.accumulation as u64 {
            let batch = batches
                .next()
                .context("the training data ended (resampled mode never should)")??;
            let (images, texts) = upload(&batch, model.config().vocab_size, device)?;
            let micro_index = step * train.accumulation as u64 + micro;
            let noise_seed = splitmix64_next(spec.seed ^ splitmix64_next(micro_index));
            let (output, grads) = on_pool(|| -> candle_core::Result<_> {
                let output = model.forward(&images, &texts, RouteMode::Train { noise_seed })?;
                let grads = output.loss.backward()?;
                Ok((output, grads))
            })?;
            accumulator.add(vars, &grads)?;
            sums.add(&output, train.accumulation as f64)?;
            if log_routing {
                tally.add(&output.encoded.routing, routed_counts(&batch))?;
            }
            last_position = Some(batch.position);
        }
        let grads = accumulator.take()?;
        let norm = match check_and_clip(step, sums.loss, vars, &grads, train.grad_clip) {
            Ok(norm) => norm,
            Err(error) => {
                logs.flush()?;
                std::fs::write(ctx.out_dir.join("nonfinite.txt"), format!("{error:#}\n"))?;
                bail!(
                    "{error:#}; training stopped, the last good checkpoint is kept in {} \
                     (lower train.lr or set train.grad_clip)",
                    checkpoints.display()
                );
            }
        };
        on_pool(|| optimizer.step(&grads, lr, norm.scale))?;
        let seconds = started.elapsed().as_secs_f64();
        wall_seconds = wall_offset + run_started.elapsed().as_secs_f64();
        let pairs_per_second = train.batch_size as f64 / seconds;
        logs.metrics
            .push(sums.row(step as i64, wall_seconds, lr, norm.norm, pairs_per_second));
        if log_routing {
            logs.routing.extend(tally.rows(step as i64, "train"));
        }
        bar.set_position(step);
        bar.set_message(format!(
            "loss {:.4} lr {lr:.2e} {pairs_per_second:.0} pairs/s",
            sums.loss
        ));

        if step.is_multiple_of(train.eval_every as u64) || step == train.steps as u64 {
            let (eval_rows, routing_rows) = periodic_eval(spec, &built, &data_dir, step as i64)?;
            latest_eval = eval_rows
                .iter()
                .filter(|r| r.value.is_finite())
                .map(|r| (format!("{}/{}", r.dataset, r.metric), r.value))
                .collect();
            logs.eval.extend(eval_rows);
            logs.routing.extend(routing_rows);
        }
        if step.is_multiple_of(train.checkpoint_every as u64) || step == train.steps as u64 {
            logs.flush()?;
            let Some(position) = &last_position else {
                bail!("no batch was read before the checkpoint of step {step}");
            };
            let extra = serde_json::to_value(ResumeState {
                position: position.clone(),
                wall_seconds,
            })?;
            let mut metrics = latest_eval.clone();
            if sums.loss.is_finite() {
                metrics.insert("loss".to_string(), sums.loss);
            }
            checkpoint::save(&checkpoints, step, vars, &optimizer, &metrics, &extra)?;
            checkpoint::retain(
                &checkpoints,
                &Retention {
                    keep_last: train.keep_checkpoints,
                    best: Some(train.best.clone()),
                },
            )?;
        }
    }
    bar.finish_and_clear();
    logs.flush()?;
    if let Some(position) = &last_position {
        let counters = &position.counters;
        tracing::info!(
            "train: {} pairs read, {} skipped (empty caption {}, empty image {}, undecodable {})",
            counters.yielded,
            counters.skipped(),
            counters.empty_caption,
            counters.empty_image,
            counters.undecodable
        );
        files::write_atomic(
            &ctx.out_dir.join(LOADER_COUNTERS),
            serde_json::to_string_pretty(counters)?.as_bytes(),
        )?;
    }
    Ok(())
}

/// Zero-shot accuracy and retrieval on part of the validation split, with its routing.
fn periodic_eval(
    spec: &Spec,
    built: &Built,
    data_dir: &Path,
    step: i64,
) -> anyhow::Result<(Vec<limoe_core::logs::EvalRow>, Vec<RoutingRow>)> {
    let mut tally = RoutingTally::default();
    let request = EmbedRequest {
        dir: data_dir,
        split: Split::Val,
        limit: Some(PERIODIC_EVAL_PAIRS),
        batch_size: spec.eval.batch_size,
        preprocess: &built.preprocess,
        assignments_step: None,
    };
    let emb = embed_split(
        &built.model,
        &built.device,
        &request,
        &mut tally,
        &mut Vec::new(),
    )?;
    let setup = ZeroShotSetup {
        model: &built.model,
        device: &built.device,
        preprocess: &built.preprocess,
        templates: &spec.eval.zero_shot.templates,
        batch_size: spec.eval.batch_size,
    };
    let mut rows = zero_shot_rows(&setup, &emb, &spec.eval.zero_shot.datasets, step)?;
    rows.extend(retrieval_rows(&emb, step)?);
    Ok((rows, tally.rows(step, "val")))
}

/// Loss terms of one step, averaged over its micro-batches.
#[derive(Default)]
struct Sums {
    loss: f64,
    contrastive: f64,
    aux: f64,
    terms: [[f64; 2]; 5],
    logit_scale: f64,
}

impl Sums {
    fn add(&mut self, output: &limoe_model::Output, micro_batches: f64) -> anyhow::Result<()> {
        let scalar = |t: &candle_core::Tensor| -> anyhow::Result<f64> {
            Ok(t.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()? / micro_batches)
        };
        self.loss += scalar(&output.loss)?;
        self.contrastive += scalar(&output.contrastive)?;
        self.aux += scalar(&output.aux)?;
        self.logit_scale = scalar(&output.logit_scale)? * micro_batches;
        for (sum, term) in self
            .terms
            .iter_mut()
            .zip(aux_sums(&output.encoded.routing)?)
        {
            sum[0] += term[0] / micro_batches;
            sum[1] += term[1] / micro_batches;
        }
        Ok(())
    }

    fn row(&self, step: i64, wall_seconds: f64, lr: f64, grad_norm: f64, pairs: f64) -> MetricsRow {
        let [local, global, importance, load, z] = self.terms;
        MetricsRow {
            step,
            wall_seconds,
            lr,
            loss: self.loss,
            contrastive: self.contrastive,
            aux: self.aux,
            local_entropy_image: local[0],
            local_entropy_text: local[1],
            global_entropy_image: global[0],
            global_entropy_text: global[1],
            importance_image: importance[0],
            importance_text: importance[1],
            load_image: load[0],
            load_text: load[1],
            z_loss_image: z[0],
            z_loss_text: z[1],
            grad_norm,
            logit_scale: self.logit_scale,
            pairs_per_second: pairs,
        }
    }
}
