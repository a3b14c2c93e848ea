//! `limoe sweep`: validate every trial, run the stages trials share once, then hand the
//! trials to an executor (child processes here, or a Slurm array) and record them in
//! `sweep.json`.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::bail;
use limoe_core::runner::{Outcome, Plan, PlannedStage, Runner, Status};
use limoe_core::sweep::{
    OverrideValues, StageOutput, Sweep, SweepRecord, TrialRecord, TrialState, key_metric,
    load_sweep, trial_dir,
};
use limoe_core::{Progress, Registry};

use crate::load::INVALID_SPEC;
use crate::{sweep_local, sweep_slurm};

/// `CANDLE_NUM_THREADS` of a trial: candle's own elementwise ops stay on the calling thread
/// (its spinning thread pool competes with rayon's, which runs the fused ops and the matmuls
/// on the trial's `RAYON_NUM_THREADS`; measured with `limoe bench`: t128 step ~94 ms with 1,
/// ~124-131 ms with 2 on 2 cores).
pub(crate) const CANDLE_THREADS: &str = "1";

/// Where the trials of a sweep run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Executor {
    /// Child processes of this binary on this machine (`--jobs` at once).
    Local,
    /// A Slurm job array (`sbatch`), one array task per trial.
    Slurm,
}

impl Executor {
    fn name(self) -> &'static str {
        match self {
            Executor::Local => "local",
            Executor::Slurm => "slurm",
        }
    }
}

/// What `limoe sweep` was asked to do.
pub struct SweepOptions<'a> {
    /// `--runs-dir`.
    pub runs_dir: &'a Path,
    /// `--reports-dir`.
    pub reports_dir: &'a Path,
    /// The spec file.
    pub spec: &'a Path,
    /// `--set` arguments for every trial.
    pub sets: &'a [String],
    /// Trials at once (local executor).
    pub jobs: usize,
    /// Where trials run.
    pub executor: Executor,
    /// Print and stop.
    pub dry_run: bool,
    /// No progress bars.
    pub quiet: bool,
}

/// A stage that several trials share: (stage id, cache key).
type StageKey = (String, String);

/// `limoe sweep`.
pub fn sweep(registry: &Registry, opts: &SweepOptions) -> anyhow::Result<ExitCode> {
    if opts.jobs == 0 {
        bail!("--jobs 0 runs nothing; give --jobs 1 or more (trials run at once)");
    }
    let sweep = match load_sweep(opts.spec, opts.sets, registry) {
        Ok(sweep) => sweep,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(INVALID_SPEC));
        }
    };
    // Absolute, so that sweep.json and the trials' records hold paths usable from anywhere.
    let runs_dir = absolute(opts.runs_dir)?;
    let opts = &SweepOptions {
        runs_dir: &runs_dir,
        ..*opts
    };
    let runner = Runner::new(registry, &runs_dir, Progress::new(!opts.quiet));
    let plans = plan_trials(&runner, &sweep)?;
    let experiment_dir = plans[0].experiment_dir.clone();
    let shared = shared_stages(&plans);
    print_trials(&sweep, &plans, &shared);
    let threads = sweep_local::threads_per_trial(opts.jobs);
    if opts.dry_run {
        match opts.executor {
            Executor::Local => println!(
                "local executor: {} trial(s) at once, {threads} thread(s) each; --dry-run: nothing was run",
                opts.jobs
            ),
            Executor::Slurm => {
                let record = new_record(&sweep, &plans, opts);
                print!(
                    "{}",
                    sweep_slurm::script(&sweep, opts, &record, &experiment_dir)?
                );
                println!("# --dry-run: nothing was written or submitted");
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !run_shared(&runner, &sweep, &plans, &shared)? {
        return Ok(ExitCode::FAILURE);
    }
    // Shared stages are now cached; trials whose every stage is cached are not started.
    let plans = plan_trials(&runner, &sweep)?;
    let mut record = new_record(&sweep, &plans, opts);
    for trial in record
        .trials
        .iter()
        .filter(|t| t.state == TrialState::Cached)
    {
        println!("{}", progress_line(trial));
    }
    match opts.executor {
        Executor::Local => sweep_local::run_trials(opts, threads, &mut record, &experiment_dir)?,
        Executor::Slurm => sweep_slurm::submit(&sweep, opts, &mut record, &experiment_dir)?,
    }
    record.updated = now();
    record.write(&experiment_dir)?;
    print_table(&record);
    after_trials(&record, &sweep, opts.reports_dir);
    Ok(if record.succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Called once every trial has ended (or been submitted): the comparison report of the
/// finished trials (a report failure is reported but does not fail the sweep).
fn after_trials(record: &SweepRecord, sweep: &Sweep, reports_dir: &Path) {
    let Some(first) = sweep.trials.first() else {
        return;
    };
    match crate::report::sweep_report(record, &first.loaded.spec.analysis, reports_dir) {
        Ok(index) => println!("report: {}", index.display()),
        Err(e) => eprintln!("warning: the sweep's report could not be written: {e:#}"),
    }
}

/// The plan of every trial, each recording into its own `trials/<id>/` directory.
fn plan_trials(runner: &Runner, sweep: &Sweep) -> anyhow::Result<Vec<Plan>> {
    sweep
        .trials
        .iter()
        .map(|t| {
            let plan = runner.plan(&t.loaded, &[])?;
            let dir = trial_dir(&plan.experiment_dir, &t.trial.id);
            Ok(plan.recording_in(dir))
        })
        .collect()
}

/// Stages that appear with the same id and cache key in two or more trials' plans.
fn shared_stages(plans: &[Plan]) -> HashSet<StageKey> {
    let mut counts: HashMap<StageKey, usize> = HashMap::new();
    for plan in plans {
        for s in &plan.stages {
            *counts.entry((s.id.clone(), s.key.clone())).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(k, _)| k)
        .collect()
}

fn print_trials(sweep: &Sweep, plans: &[Plan], shared: &HashSet<StageKey>) {
    println!(
        "sweep `{}`: {} trial(s) -> {}",
        sweep.base.spec.name,
        sweep.trials.len(),
        plans[0].experiment_dir.display()
    );
    for (t, plan) in sweep.trials.iter().zip(plans) {
        let stages: Vec<String> = plan
            .stages
            .iter()
            .map(|s| {
                let status = match s.status {
                    Status::Cached => "cached",
                    _ if shared.contains(&(s.id.clone(), s.key.clone())) => "shared",
                    _ => "run",
                };
                format!("{}:{status}", s.id)
            })
            .collect();
        let overrides: Vec<String> = t.trial.overrides.iter().map(|o| o.as_set()).collect();
        println!("  {}  [{}]", t.trial.id, stages.join(" "));
        println!("      {}", overrides.join(" "));
    }
}

/// Runs every pending shared stage once, in this process, before any trial starts. False
/// (after printing the error) when one fails: every trial needing it would fail the same way.
fn run_shared(
    runner: &Runner,
    sweep: &Sweep,
    plans: &[Plan],
    shared: &HashSet<StageKey>,
) -> anyhow::Result<bool> {
    let mut built: HashSet<StageKey> = HashSet::new();
    for (t, plan) in sweep.trials.iter().zip(plans) {
        let key = |s: &PlannedStage| (s.id.clone(), s.key.clone());
        let needed = plan.stages.iter().any(|s| {
            shared.contains(&key(s)) && s.status != Status::Cached && !built.contains(&key(s))
        });
        if !needed {
            continue;
        }
        // Upstream stages of a shared stage are shared too (their keys feed its key).
        let sub = plan
            .clone()
            .only(|s| shared.contains(&key(s)))
            .recording_in(plan.experiment_dir.join("shared"));
        let ids: Vec<&str> = sub.stages.iter().map(|s| s.id.as_str()).collect();
        println!(
            "shared stages (run once for every trial): {}",
            ids.join(", ")
        );
        let report = runner.execute(&t.loaded, &sub)?;
        for (id, dir, outcome) in &report.stages {
            match outcome {
                Outcome::Cached => println!("  {id:<12} cached     {}", dir.display()),
                Outcome::Ran { seconds } => {
                    println!("  {id:<12} done {seconds:>5.1}s {}", dir.display())
                }
                Outcome::Failed { error } => {
                    eprintln!(
                        "error: shared stage `{id}` failed, so no trial was started: {error}"
                    );
                    return Ok(false);
                }
            }
        }
        built.extend(sub.stages.iter().map(key));
    }
    Ok(true)
}

/// The record of a sweep about to run: trials whose stages are all cached are `cached`
/// (with their metric), the others `pending`.
fn new_record(sweep: &Sweep, plans: &[Plan], opts: &SweepOptions) -> SweepRecord {
    let trials = sweep
        .trials
        .iter()
        .zip(plans)
        .map(|(t, plan)| {
            let mut trial = TrialRecord {
                id: t.trial.id.clone(),
                overrides: OverrideValues::of(&t.trial),
                record_dir: plan.record_dir.clone(),
                state: TrialState::Pending,
                seconds: None,
                metric: None,
                stages: plan
                    .stages
                    .iter()
                    .map(|s| StageOutput {
                        id: s.id.clone(),
                        kind: s.kind.clone(),
                        dir: s.dir.clone(),
                    })
                    .collect(),
                error: None,
            };
            if plan.all_cached() {
                trial.state = TrialState::Cached;
                trial.metric = trial.summary().as_ref().and_then(key_metric);
            }
            trial
        })
        .collect();
    SweepRecord {
        experiment: sweep.base.spec.name.clone(),
        spec: absolute(opts.spec).unwrap_or_else(|_| opts.spec.to_path_buf()),
        sets: opts.sets.to_vec(),
        executor: opts.executor.name().into(),
        updated: now(),
        trials,
    }
}

/// One line for a trial that ended: id, state, seconds, key metric.
pub(crate) fn progress_line(t: &TrialRecord) -> String {
    format!(
        "trial {}: {} {} {}",
        t.id,
        t.state.word(),
        seconds_text(t.seconds),
        metric_text(t)
    )
}

fn seconds_text(seconds: Option<f64>) -> String {
    seconds.map_or_else(|| "-".into(), |s| format!("{s:.1}s"))
}

fn metric_text(t: &TrialRecord) -> String {
    t.metric
        .as_ref()
        .map_or_else(|| "-".into(), |m| format!("{} {:.4}", m.name, m.value))
}

fn print_table(record: &SweepRecord) {
    let width = record
        .trials
        .iter()
        .map(|t| t.id.len())
        .max()
        .unwrap_or(5)
        .max(5);
    println!(
        "\n{:<width$}  {:<9} {:>9}  metric",
        "trial", "state", "seconds"
    );
    for t in &record.trials {
        println!(
            "{:<width$}  {:<9} {:>9}  {}",
            t.id,
            t.state.word(),
            seconds_text(t.seconds),
            metric_text(t)
        );
    }
    let count = |s: TrialState| record.trials.iter().filter(|t| t.state == s).count();
    println!(
        "{} done, {} cached, {} failed, {} submitted",
        count(TrialState::Done),
        count(TrialState::Cached),
        count(TrialState::Failed),
        count(TrialState::Submitted)
    );
}

/// The current time (RFC 3339, UTC).
fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// An absolute form of `path` (relative to the current directory), for scripts and children.
pub(crate) fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    Ok(std::path::absolute(path)?)
}
