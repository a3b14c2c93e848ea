//! The training loop: streamed batches, accumulation, clipping, AdamW, periodic evaluation,
//! logs, atomic checkpoints, and exact resume from the last checkpoint; contrastive, or a
//! classifier's on labels, from the seed or from a pre-trained checkpoint (a transfer).
//! [`train`] reads top to bottom: resume, then per step the forward and backward passes, the
//! update, the logs, the periodic evaluation and the checkpoint. SIGINT or SIGTERM stops it after the current
//! step, with a checkpoint of that step ([`interrupt`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use candle_core::{Tensor, Var};
use limoe_core::kinds::INGEST;
use limoe_core::logs::{MetricsRow, TRAINING_STEPS_SPLIT, metrics as metric_columns};
use limoe_core::random::splitmix64_next;
use limoe_core::records::{PLAN_FILE, write_record};
use limoe_core::spec::Spec;
use limoe_core::{StageContext, files, interrupt};
use limoe_data::batch::{Batch, Batcher, Prefetcher, Preprocess};
use limoe_data::loader::{Loader, LoaderOptions, Mode, Position};
use limoe_data::split::Split;
use limoe_dist::Communicator;
use limoe_model::moe::{Aux, AuxValues, ExpertGroup, PerModality, RouteMode};
use limoe_model::plan::Placement;
use limoe_model::{LOG_LOGIT_SCALE, Model, Negatives, is_classifier_logits};
use limoe_ops::pool::on_pool;
use serde::{Deserialize, Serialize};

use crate::budget::{micro_batch, plan_record};
use crate::checkpoint::{self, Retention};
use crate::classes::ClassIndex;
use crate::clip::check_and_clip;
use crate::data_parallel::gather_rows;
use crate::expert_parallel::RankGroups;
use crate::inputs::{routed_counts, upload, upload_images};
use crate::logs::{LiveLog, RunLogs};
use crate::model_build::{Built, build_placed};
use crate::optim::{AdamW, AdamWConfig, GradAccumulator, clamp_logit_scale};
use crate::placement;
use crate::routing_log::{RoutingTally, aux_sums};
use crate::schedule::LrSchedule;
use crate::suite::Suite;

/// Where a train stage keeps its checkpoints, inside its output directory.
pub const CHECKPOINTS: &str = "checkpoints";
/// The loader's counters (pairs read, skipped by reason) at the end of training.
pub const LOADER_COUNTERS: &str = "loader.json";
/// Batches prepared ahead of the step that needs them.
const PREFETCH: usize = 4;

/// What a checkpoint stores besides weights and optimiser state.
#[derive(Serialize, Deserialize)]
struct ResumeState {
    /// The loader's position after the last batch of the checkpoint's step.
    position: Position,
    /// Seconds the run has taken so far, over all its attempts.
    wall_seconds: f64,
}

/// Runs (or resumes) training for the train stage of `ctx`.
pub fn train(ctx: &StageContext) -> anyhow::Result<()> {
    train_from(ctx, &ctx.input(INGEST)?.dir, &Start::default())
}

/// Where a run's weights start, and which of them it trains.
#[derive(Default)]
pub struct Start<'a> {
    /// A checkpoint whose weights start every parameter the model shares with it (a
    /// transfer: the image side of a pre-trained model); the rest start from the seed.
    pub from: Option<&'a Path>,
    /// Train the classifier's logits layer alone, the rest frozen (a head-only transfer).
    pub head_only: bool,
}

/// Runs (or resumes) training of `ctx.spec`'s model on the dataset at `data_dir`, its
/// weights starting as `start` says, into `ctx.out_dir`.
pub fn train_from(ctx: &StageContext, data_dir: &Path, start: &Start) -> anyhow::Result<()> {
    let spec = ctx.spec;
    let train = &spec.train;
    let comm = ctx.comm;
    let root = comm.rank() == 0;
    let placement = Placement {
        world: comm.size(),
        expert_parallel: train.expert_parallel,
    };
    let named = placement::Named {
        world: format!("the {} ranks launched", comm.size()),
        expert_parallel: format!("train.expert_parallel {}", train.expert_parallel),
    };
    placement::check(spec, placement, &named)?;
    if comm.size() > 1 {
        tracing::info!(
            "train: data-parallel over {} ranks, {} pairs each per micro-batch",
            comm.size(),
            micro_batch(spec) / comm.size()
        );
    }
    if let Some(note) = limoe_model::device::precision_note(train.precision, train.device)
        && root
    {
        tracing::warn!("{note}");
    }
    let ranks = RankGroups::new(comm, train.expert_parallel)?;
    let group = ranks.group();
    let built = build_placed(spec, group)?;
    let labels = ClassIndex::of_model(&spec.model, data_dir)?;
    if let Some(from) = start.from {
        checkpoint::load_shared_params(from, &built.vars, group)?;
    }
    let trained = trained_vars(&built.vars, start.head_only);
    let mut optimizer = AdamW::new(
        &trained,
        AdamWConfig {
            weight_decay: train.weight_decay,
            ..AdamWConfig::default()
        },
    )?;
    if root {
        write_record(ctx.out_dir, PLAN_FILE, &plan_record(spec))?;
    }
    let mut run = Run::resume(ctx.out_dir, root, &built.vars, &mut optimizer, group)?;
    let steps = train.steps as u64;
    if run.step >= steps {
        return Ok(());
    }
    let objective = Objective {
        labels: labels.as_ref(),
        frozen: start.head_only,
    };
    let mut batches = open_batches(spec, data_dir, &built.preprocess, run.position.as_ref())?;
    let schedule = LrSchedule::from_spec(train);
    let mut accumulator = GradAccumulator::new(train.accumulation)?;
    let bar = ctx.progress.bar(steps, "train");
    bar.set_position(run.step);
    let _stop_at_a_step = interrupt::Catch::install();
    while run.step < steps {
        let step = run.step + 1;
        let started = Instant::now();
        let lr = schedule.lr(step);
        let trainer = Trainer {
            spec,
            comm,
            built: &built,
            trained: &trained,
            objective: &objective,
        };
        let mut passes = trainer.forward_backward(&mut batches, &mut accumulator, step)?;
        let stop = passes.sums.average_over(comm, interrupt::requested());
        let grads = ranks.reduce_grads(comm, &trained, &accumulator.take()?, &[LOG_LOGIT_SCALE])?;
        let loss = passes.sums.loss;
        let norm = match check_and_clip(step, loss, &trained, &grads, train.grad_clip, group) {
            Ok(norm) => norm,
            Err(error) => return Err(run.stop_nonfinite(&error)),
        };
        on_pool(|| optimizer.step(&grads, lr, norm.scale))?;
        clamp_logit_scale(&built.vars, spec.model.logit_scale.max)?;
        let pairs_per_second = train.batch_size as f64 / started.elapsed().as_secs_f64();
        run.record_step(step, &passes, lr, norm.norm, pairs_per_second)?;
        bar.set_position(step);
        bar.set_message(format!(
            "loss {:.4} lr {lr:.2e} {pairs_per_second:.0} pairs/s",
            passes.sums.loss
        ));
        let last = step == steps;
        // With shared experts every rank takes part in the evaluation's forward passes.
        if (root || group.is_some()) && (step.is_multiple_of(train.eval_every as u64) || last) {
            run.periodic_eval(spec, &built, data_dir, labels.as_ref())?;
        }
        let stop = stop.filter(|_| !last);
        let due = step.is_multiple_of(train.checkpoint_every as u64) || last || stop.is_some();
        if due && ranks.writes_checkpoints() {
            run.checkpoint(spec, &built.vars, &optimizer, group)?;
        }
        if let Some(signal) = stop {
            bar.finish_and_clear();
            bail!(
                "{signal}: stopped at step {step}, its checkpoint saved in {}; rerun to continue",
                run.checkpoints().display()
            );
        }
    }
    bar.finish_and_clear();
    run.finish()
}

/// The training batches, from the start of the shuffled stream or from a checkpoint's
/// loader position.
fn open_batches(
    spec: &Spec,
    data_dir: &Path,
    preprocess: &Preprocess,
    position: Option<&Position>,
) -> anyhow::Result<Prefetcher> {
    let loader = match position {
        Some(position) => Loader::resume(data_dir, position)?,
        None => Loader::with_mode(
            data_dir,
            LoaderOptions {
                split: Split::Train,
                shuffle_buffer: spec.data.shuffle_buffer,
                seed: spec.seed,
                epoch: 0,
            },
            Mode::Resampled,
        )?,
    };
    Batcher::new(loader, preprocess.clone(), micro_batch(spec), true)?.prefetch(PREFETCH)
}

/// The parameters a run trains: every one, or with `head_only` the classifier's logits
/// layer alone.
fn trained_vars(vars: &[(String, Var)], head_only: bool) -> Vec<(String, Var)> {
    (vars.iter())
        .filter(|(name, _)| !head_only || is_classifier_logits(name))
        .cloned()
        .collect()
}

/// What a step's loss is: the contrastive loss, or a classifier's label loss.
struct Objective<'a> {
    /// A classifier's classes, which its pairs' labels index; `None` for a contrastive model.
    labels: Option<&'a ClassIndex>,
    /// Only the logits layer trains (the pre-logits are detached).
    frozen: bool,
}

/// One step's passes: the model, the parameters trained, and the objective.
struct Trainer<'a> {
    spec: &'a Spec,
    comm: &'a dyn Communicator,
    built: &'a Built,
    trained: &'a [(String, Var)],
    objective: &'a Objective<'a>,
}

/// The forward and backward passes of one step's micro-batches, their gradients added to
/// the accumulator.
struct Passes {
    /// The step's loss terms.
    sums: Sums,
    /// Its routing, on the steps that log routing.
    tally: Option<RoutingTally>,
    /// The loader's position after the step's last batch.
    position: Position,
}

impl Passes {
    /// Adds one micro-batch's pass, one of `micro_batches`, that routed `counts` tokens:
    /// its loss terms, and its routing on a step that logs it.
    fn add(
        &mut self,
        output: &limoe_model::Output,
        micro_batches: f64,
        counts: [usize; 2],
    ) -> anyhow::Result<()> {
        self.sums.add(output, micro_batches)?;
        if let Some(tally) = &mut self.tally {
            tally.add(&output.encoded.routing, counts)?;
        }
        Ok(())
    }
}

/// What every pass of one step runs: the model in the step's precision, and the routing mode
/// of a micro-batch (its index and rows).
struct Pass<'a> {
    model: &'a Model,
    mode: &'a (dyn Fn(usize, usize) -> RouteMode + Sync),
}

impl Trainer<'_> {
    /// Reads the step's micro-batches (each rank its share) and runs their passes.
    fn forward_backward(
        &self,
        batches: &mut Prefetcher,
        accumulator: &mut GradAccumulator,
        step: u64,
    ) -> anyhow::Result<Passes> {
        let (spec, comm) = (self.spec, self.comm);
        let train = &spec.train;
        let log_routing = step.is_multiple_of(train.log_every as u64) || step == 1;
        let mut micro_batches = Vec::with_capacity(train.accumulation);
        for _ in 0..train.accumulation {
            let whole = batches
                .next()
                .context("the training data ended (resampled mode never should)")??;
            micro_batches.push(match comm.size() {
                1 => whole,
                ranks => whole.share(comm.rank(), ranks)?,
            });
        }
        let position = micro_batches
            .last()
            .map(|batch| batch.position.clone())
            .context("a step has at least one micro-batch")?;
        let noise_seed = splitmix64_next(spec.seed ^ splitmix64_next(step));
        // Examples are numbered over the step's whole batch: micro-batch, then rank.
        let mode = |micro: usize, rows: usize| RouteMode::Train {
            noise_seed,
            first_example: ((micro * comm.size() + comm.rank()) * rows) as u64,
        };
        let mut passes = Passes {
            sums: Sums {
                classifier: self.objective.labels.is_some(),
                ..Sums::default()
            },
            tally: log_routing.then(RoutingTally::default),
            position,
        };
        let model =
            (self.built.model).in_precision(limoe_model::device::compute_dtype(train.precision))?;
        let pass = Pass {
            model: &model,
            mode: &mode,
        };
        match self.objective.labels {
            Some(labels) => {
                self.labelled(&micro_batches, labels, &pass, accumulator, &mut passes)?
            }
            None => self.contrastive(&micro_batches, &pass, accumulator, &mut passes)?,
        }
        Ok(passes)
    }

    /// A classifier's passes: each micro-batch's label loss, its gradient averaged over the
    /// micro-batches (the accumulator) and the ranks (scaled here, summed by the caller).
    fn labelled(
        &self,
        micro_batches: &[Batch],
        labels: &ClassIndex,
        pass: &Pass,
        accumulator: &mut GradAccumulator,
        passes: &mut Passes,
    ) -> anyhow::Result<()> {
        let built = self.built;
        let ranks = self.comm.size() as f64;
        let micro_count = micro_batches.len() as f64;
        for (micro, batch) in micro_batches.iter().enumerate() {
            let images = upload_images(batch, &built.device)?;
            let classes = labels.tensor(batch, &built.device)?;
            let (output, grads) = on_pool(|| -> candle_core::Result<_> {
                let output = pass.model.forward_labelled(
                    &images,
                    &classes,
                    (pass.mode)(micro, batch.len()),
                    self.objective.frozen,
                )?;
                let grads = output.loss.affine(1.0 / ranks, 0.0)?.backward()?;
                Ok((output, grads))
            })?;
            accumulator.add(self.trained, &grads)?;
            passes.add(&output, micro_count, routed_counts(batch, false))?;
        }
        Ok(())
    }

    /// Each rank computes its share of every micro-batch, and the contrastive loss contrasts
    /// the whole step's batch: every rank's rows of every micro-batch. With several
    /// micro-batches, a first pass caches every micro-batch's embeddings (plain values, as
    /// open_clip's `accum_freq`), and each micro-batch's pass then carries that loss through
    /// its own rows; the caller sums the gradients over the ranks.
    fn contrastive(
        &self,
        micro_batches: &[Batch],
        pass: &Pass,
        accumulator: &mut GradAccumulator,
        passes: &mut Passes,
    ) -> anyhow::Result<()> {
        let (spec, comm, built) = (self.spec, self.comm, self.built);
        let mode = pass.mode;
        let train = &spec.train;
        let uploaded = (micro_batches.iter())
            .map(|batch| upload(batch, built.model.spec().vocab_size, &built.device))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let micro_batches: Vec<_> = (micro_batches.iter().zip(&uploaded))
            .map(|(batch, (images, texts))| (batch, images, texts))
            .collect();
        let cached = match train.accumulation {
            1 => Vec::new(),
            _ => (micro_batches.iter().enumerate())
                .map(|(micro, &(batch, images, texts))| {
                    on_pool(|| -> candle_core::Result<_> {
                        let encoded = pass.model.encode(
                            Some(images),
                            Some(texts),
                            mode(micro, batch.len()),
                        )?;
                        let (Some(image), Some(text)) = (encoded.image, encoded.text) else {
                            candle_core::bail!("a contrastive model embeds both modalities");
                        };
                        Ok((
                            gather_rows(comm, &image.detach())?,
                            gather_rows(comm, &text.detach())?,
                        ))
                    })
                })
                .collect::<candle_core::Result<Vec<_>>>()?,
        };
        let ranks = comm.size() as f64;
        let whole_batch = train.accumulation as f64;
        for (micro, &(batch, images, texts)) in micro_batches.iter().enumerate() {
            let gather = |image: &Tensor, text: &Tensor| {
                let fresh = (gather_rows(comm, image)?, gather_rows(comm, text)?);
                if cached.is_empty() {
                    return Ok(fresh);
                }
                let around = |fresh: Tensor, side: fn(&(Tensor, Tensor)) -> &Tensor| {
                    let mut parts: Vec<Tensor> = cached.iter().map(|c| side(c).clone()).collect();
                    parts[micro] = fresh;
                    Tensor::cat(&parts, 0)
                };
                Ok((around(fresh.0, |c| &c.0)?, around(fresh.1, |c| &c.1)?))
            };
            let negatives = Negatives {
                gather: &gather,
                scale_gradient: micro == 0,
            };
            let (output, grads) = on_pool(|| -> candle_core::Result<_> {
                let output = pass.model.forward_with_negatives(
                    images,
                    texts,
                    mode(micro, batch.len()),
                    &negatives,
                )?;
                // The accumulator averages over the micro-batches and the ranks' gradients are
                // summed: the whole batch's contrastive loss, which each pass carries through
                // its own rows only, counts once in all, and the auxiliary losses are the mean
                // of every rank's and micro-batch's.
                let grads = (output.objective.affine(whole_batch, 0.0)?
                    + output.aux.affine(1.0 / ranks, 0.0)?)?
                .backward()?;
                Ok((output, grads))
            })?;
            accumulator.add(self.trained, &grads)?;
            passes.add(&output, whole_batch, routed_counts(batch, true))?;
        }
        Ok(())
    }
}

/// Loads the newest checkpoint in `out_dir` that verifies, saying which newer ones were
/// skipped and why (a truncated or changed file must not block every later resume); `None`
/// when there is none to resume from. A checkpoint that fails sets nothing
/// ([`checkpoint::load`] checks everything first).
fn restore(
    out_dir: &Path,
    vars: &[(String, Var)],
    optimizer: &mut AdamW,
    group: Option<&ExpertGroup>,
) -> anyhow::Result<Option<(u64, ResumeState)>> {
    let saved = checkpoint::list(&out_dir.join(CHECKPOINTS))?;
    for candidate in saved.iter().rev() {
        let restored = serde_json::from_value::<ResumeState>(candidate.state.extra.clone())
            .with_context(|| format!("{} has no loader position", candidate.path.display()))
            .and_then(|resume| {
                checkpoint::load(&candidate.path, vars, optimizer, group)?;
                Ok(resume)
            });
        match restored {
            Ok(resume) => return Ok(Some((candidate.step, resume))),
            Err(e) => tracing::warn!(
                "train: skipping the checkpoint of step {}: {e:#}",
                candidate.step
            ),
        }
    }
    if !saved.is_empty() {
        tracing::warn!("train: no checkpoint verifies; training starts again from step 0");
    }
    Ok(None)
}

/// A run in progress: where it stands, its logs, and what its checkpoints record.
struct Run {
    /// The train stage's output directory.
    out_dir: PathBuf,
    /// The last step done.
    step: u64,
    /// The loader's position after the last step's batches.
    position: Option<Position>,
    /// The training loss of the last step.
    loss: f64,
    /// Seconds of earlier attempts.
    earlier_seconds: f64,
    /// When this attempt started.
    started: Instant,
    /// The run's logs, kept by rank 0 alone.
    logs: Option<RunLogs>,
    /// The same as TensorBoard events, flushed at every log step (rank 0 alone).
    live: Option<LiveLog>,
    /// The latest periodic evaluation's metrics, `<dataset>/<metric>`: what picks the best
    /// checkpoint besides the training loss.
    latest_eval: BTreeMap<String, f64>,
}

impl Run {
    /// Continues after the newest checkpoint in `out_dir`, loading its weights and optimiser
    /// state (this rank's expert shares under an expert `group`), or starts at step 0. Only
    /// the `root` rank writes: logs, checkpoints, records.
    fn resume(
        out_dir: &Path,
        root: bool,
        vars: &[(String, Var)],
        optimizer: &mut AdamW,
        group: Option<&ExpertGroup>,
    ) -> anyhow::Result<Run> {
        let (step, position, earlier_seconds) = match restore(out_dir, vars, optimizer, group)? {
            Some((step, resume)) => {
                tracing::info!("train: resuming after step {step}");
                (step, Some(resume.position), resume.wall_seconds)
            }
            None => (0, None, 0.0),
        };
        let (logs, live) = match (root, step) {
            (false, _) => (None, None),
            (true, 0) => (
                Some(RunLogs::create(out_dir)?),
                Some(LiveLog::create(out_dir)?),
            ),
            (true, step) => (
                Some(RunLogs::resume(out_dir, step as i64)?),
                Some(LiveLog::resume(out_dir, step as i64)?),
            ),
        };
        Ok(Run {
            out_dir: out_dir.to_owned(),
            step,
            position,
            loss: f64::NAN,
            earlier_seconds,
            started: Instant::now(),
            logs,
            live,
            latest_eval: BTreeMap::new(),
        })
    }

    fn checkpoints(&self) -> PathBuf {
        self.out_dir.join(CHECKPOINTS)
    }

    /// Seconds the run has taken so far, over all its attempts.
    fn wall_seconds(&self) -> f64 {
        self.earlier_seconds + self.started.elapsed().as_secs_f64()
    }

    /// Logs a finished step's metrics (and its routing, when it was tallied: a log step,
    /// which also hands the events to TensorBoard).
    fn record_step(
        &mut self,
        step: u64,
        passes: &Passes,
        lr: f64,
        norm: f64,
        pairs: f64,
    ) -> anyhow::Result<()> {
        let row = passes
            .sums
            .row(step as i64, self.wall_seconds(), lr, norm, pairs);
        let routing = (passes.tally.as_ref()).map(|t| t.rows(step as i64, TRAINING_STEPS_SPLIT));
        if let Some(live) = &mut self.live {
            live.metrics(&row)?;
            if let Some(routing) = &routing {
                live.routing(routing)?;
                live.flush()?;
            }
        }
        if let Some(logs) = &mut self.logs {
            logs.metrics.push(row);
            logs.routing.extend(routing.into_iter().flatten());
        }
        self.step = step;
        self.loss = passes.sums.loss;
        self.position = Some(passes.position.clone());
        Ok(())
    }

    /// The evaluation suite on part of the validation split, with the spec's
    /// `train.monitor` settings.
    fn periodic_eval(
        &mut self,
        spec: &Spec,
        built: &Built,
        data_dir: &Path,
        labels: Option<&ClassIndex>,
    ) -> anyhow::Result<()> {
        let monitor = &spec.train.monitor;
        let suite = Suite {
            labels,
            mode: RouteMode::Eval,
            split: Split::Val,
            pairs: monitor.pairs,
            batch_size: monitor.batch_size,
            zero_shot: &monitor.zero_shot,
            retrieval: &monitor.retrieval,
            few_shot: None,
            assignments: false,
            benchmarks: BTreeMap::new(),
            data_name: spec.data.name(),
        };
        let result = suite.run(built, data_dir, self.step as i64)?;
        self.latest_eval = result
            .rows
            .iter()
            .filter(|r| r.value.is_finite())
            .map(|r| (r.key(), r.value))
            .collect();
        if let Some(live) = &mut self.live {
            live.eval(&result.rows)?;
            live.routing(&result.routing)?;
            if !result.routing.is_empty() {
                live.specialisation(self.step as i64, &result.routing, Split::Val.name())?;
            }
            live.flush()?;
        }
        if let Some(logs) = &mut self.logs {
            logs.eval.extend(result.rows);
            logs.routing.extend(result.routing);
        }
        Ok(())
    }

    /// Flushes the logs, saves a checkpoint of the last step and prunes older ones: rank 0,
    /// the other ranks of its expert `group` sending their shares (the rest never call it).
    fn checkpoint(
        &mut self,
        spec: &Spec,
        vars: &[(String, Var)],
        optimizer: &AdamW,
        group: Option<&ExpertGroup>,
    ) -> anyhow::Result<()> {
        let whole = checkpoint::whole_state(vars, optimizer, group)?;
        if !self.flush_logs()? {
            return Ok(());
        }
        let Some(position) = &self.position else {
            bail!(
                "no batch was read before the checkpoint of step {}",
                self.step
            );
        };
        let extra = serde_json::to_value(ResumeState {
            position: position.clone(),
            wall_seconds: self.wall_seconds(),
        })?;
        let mut metrics = self.latest_eval.clone();
        if self.loss.is_finite() {
            metrics.insert(metric_columns::LOSS.to_owned(), self.loss);
        }
        let checkpoints = self.checkpoints();
        let updates = optimizer.step_count();
        checkpoint::save(&checkpoints, self.step, &whole, updates, &metrics, &extra)?;
        checkpoint::retain(
            &checkpoints,
            &Retention {
                keep_last: spec.train.keep_checkpoints,
                best: Some(spec.train.best.clone()),
            },
        )?;
        Ok(())
    }

    /// Flushes the Parquet logs and the events; false on the ranks that keep none.
    fn flush_logs(&mut self) -> anyhow::Result<bool> {
        if let Some(live) = &mut self.live {
            live.flush()?;
        }
        match &mut self.logs {
            Some(logs) => logs.flush().map(|_| true),
            None => Ok(false),
        }
    }

    /// Stops on a non-finite loss or gradient: the logs so far are kept, and the reason is
    /// written next to them.
    fn stop_nonfinite(&mut self, error: &anyhow::Error) -> anyhow::Error {
        let saved = self.flush_logs().and_then(|kept| match kept {
            true => std::fs::write(self.out_dir.join("nonfinite.txt"), format!("{error:#}\n"))
                .map_err(anyhow::Error::from),
            false => Ok(()),
        });
        if let Err(e) = saved {
            return e.context(format!("{error:#}"));
        }
        let kept = match checkpoint::latest(&self.checkpoints()) {
            Ok(Some(last)) => format!(
                "the last good checkpoint, of step {}, is kept in {}",
                last.step,
                last.path.display()
            ),
            _ => "no checkpoint had been saved yet, so there is none to keep".to_owned(),
        };
        anyhow::anyhow!(
            "{error:#}; training stopped, {kept} (lower train.lr or set train.grad_clip)"
        )
    }

    /// Flushes the logs and records the loader's counters (rank 0).
    fn finish(mut self) -> anyhow::Result<()> {
        if !self.flush_logs()? {
            return Ok(());
        }
        let Some(position) = &self.position else {
            return Ok(());
        };
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
            &self.out_dir.join(LOADER_COUNTERS),
            serde_json::to_string_pretty(counters)?.as_bytes(),
        )?;
        Ok(())
    }
}

/// Loss terms of one step, averaged over its micro-batches.
#[derive(Default)]
struct Sums {
    /// The objective is a classifier's label loss (each rank's own rows), not the
    /// contrastive loss (the whole batch's on every rank).
    classifier: bool,
    loss: f64,
    objective: f64,
    aux: f64,
    terms: AuxValues,
    logit_scale: Option<f64>,
}

impl Sums {
    fn add(&mut self, output: &limoe_model::Output, micro_batches: f64) -> anyhow::Result<()> {
        let scalar = |t: &candle_core::Tensor| -> anyhow::Result<f64> {
            Ok(t.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()? / micro_batches)
        };
        self.loss += scalar(&output.loss)?;
        self.objective += scalar(&output.objective)?;
        self.aux += scalar(&output.aux)?;
        self.logit_scale = match &output.logit_scale {
            Some(scale) => Some(scalar(scale)? * micro_batches),
            None => None,
        };
        let mut terms = aux_sums(&output.encoded.routing)?;
        for (sum, term) in self.terms.values_mut().into_iter().zip(terms.values_mut()) {
            *sum += *term / micro_batches;
        }
        Ok(())
    }

    /// On several ranks, makes the auxiliary terms (each rank's own tokens) and a
    /// classifier's label loss (each rank's own rows) their mean over the ranks and the loss
    /// the whole batch's; the contrastive loss is already the whole batch's on every rank.
    /// Returns the stop signal when any rank was asked to stop, so
    /// that every rank stops after the same step.
    fn average_over(
        &mut self,
        comm: &dyn Communicator,
        signal: Option<&'static str>,
    ) -> Option<&'static str> {
        if comm.size() == 1 {
            return signal;
        }
        let mut values = vec![
            self.aux,
            f64::from(u8::from(signal.is_some())),
            self.objective,
        ];
        values.extend(self.terms.values_mut().map(|term| *term));
        comm.all_reduce_sum_f64(&mut values);
        let mean = |sum: f64| sum / comm.size() as f64;
        self.aux = mean(values[0]);
        if self.classifier {
            self.objective = mean(values[2]);
        }
        for (term, sum) in self.terms.values_mut().into_iter().zip(&values[3..]) {
            *term = mean(*sum);
        }
        self.loss = self.objective + self.aux;
        match (signal, values[1] > 0.0) {
            (Some(signal), _) => Some(signal),
            (None, true) => Some("a signal to another rank"),
            (None, false) => None,
        }
    }

    fn row(&self, step: i64, wall_seconds: f64, lr: f64, grad_norm: f64, pairs: f64) -> MetricsRow {
        let Aux {
            modality: PerModality { image, text },
            joint,
        } = &self.terms;
        MetricsRow {
            step,
            wall_seconds,
            lr,
            loss: self.loss,
            contrastive: if self.classifier {
                f64::NAN
            } else {
                self.objective
            },
            classification: if self.classifier {
                self.objective
            } else {
                f64::NAN
            },
            aux: self.aux,
            local_entropy_image: image.local_entropy,
            local_entropy_text: text.local_entropy,
            global_entropy_image: image.global_entropy,
            global_entropy_text: text.global_entropy,
            importance_image: image.importance,
            importance_text: text.importance,
            load_image: image.load,
            load_text: text.load,
            importance_joint: joint.importance,
            load_joint: joint.load,
            z_loss_image: image.z_loss,
            z_loss_text: text.z_loss,
            grad_norm,
            logit_scale: self.logit_scale.unwrap_or(f64::NAN),
            pairs_per_second: pairs,
        }
    }
}
