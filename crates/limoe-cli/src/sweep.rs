//! `limoe sweep`: picks the executor, has [`limoe_core::sweep`] validate, plan and run the
//! trials, and prints what happens, the trials' table and the sweep's report.

use std::path::Path;
use std::process::ExitCode;

use anyhow::bail;
use limoe_core::runner::{Outcome, Runner, Status};
use limoe_core::sweep::{
    Executor, Local, Slurm, Sweep, SweepContext, SweepEvent, SweepPlan, SweepRecord, TrialRecord,
    TrialState, load_sweep, run_sweep, update_status,
};
use limoe_core::{Progress, Registry};

use crate::load::INVALID_SPEC;

/// Where the trials of a sweep run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ExecutorKind {
    /// Child processes of this binary on this machine (`--jobs` at once).
    Local,
    /// A Slurm job array (`sbatch`), one array task per trial.
    Slurm,
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
    pub executor: ExecutorKind,
    /// Wait for the Slurm tasks to end.
    pub wait: bool,
    /// Refresh the record of an earlier sweep instead of running one.
    pub status: bool,
    /// Print and stop.
    pub dry_run: bool,
    /// No progress bars.
    pub quiet: bool,
}

/// `limoe sweep`.
pub fn sweep(registry: &Registry, opts: &SweepOptions) -> anyhow::Result<ExitCode> {
    if opts.jobs == 0 {
        bail!("--jobs 0 runs nothing; give --jobs 1 or more (trials run at once)");
    }
    if opts.wait && opts.executor != ExecutorKind::Slurm {
        bail!(
            "--wait waits for Slurm tasks; give it with --executor slurm (local trials are always waited for)"
        );
    }
    let sweep = match load_sweep(opts.spec, opts.sets, registry) {
        Ok(sweep) => sweep,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(INVALID_SPEC));
        }
    };
    // Absolute, so that sweep.json and the trials' records hold paths usable from anywhere.
    let runs_dir = std::path::absolute(opts.runs_dir)?;
    if opts.status {
        return status(
            registry,
            &sweep,
            &runs_dir.join(&sweep.base.spec.name),
            opts.reports_dir,
        );
    }
    let runner = Runner::new(registry, &runs_dir, Progress::new(!opts.quiet));
    if !opts.dry_run {
        for trial in &sweep.trials {
            runner.prepare(&trial.loaded)?;
        }
    }
    let plan = SweepPlan::new(&runner, &sweep)?;
    print_trials(&sweep, &plan);
    let context = SweepContext {
        sweep: &sweep,
        runs_dir: &runs_dir,
        experiment_dir: plan.experiment_dir(),
    };
    let local = Local::new(opts.jobs, sweep.base.spec.executor.local.ranks as usize);
    let slurm = Slurm { wait: opts.wait };
    let executor: &dyn Executor = match opts.executor {
        ExecutorKind::Local => &local,
        ExecutorKind::Slurm => &slurm,
    };
    if opts.dry_run {
        match opts.executor {
            ExecutorKind::Local => println!(
                "local executor: {}; --dry-run: nothing was run",
                local_text(local.jobs, local.ranks, local.threads)
            ),
            ExecutorKind::Slurm => {
                let record = plan.record(&sweep, slurm.name());
                print!("{}", slurm.script(&context, &record)?);
                println!("# --dry-run: nothing was written or submitted");
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let Some(record) = run_sweep(&runner, &context, &plan, executor, &mut print_event)? else {
        return Ok(ExitCode::FAILURE);
    };
    Ok(conclude(registry, &record, &sweep, opts.reports_dir))
}

/// `limoe sweep SPEC --status`: the record of the sweep in `experiment_dir` brought up to
/// date (from Slurm and the trials' records), its table and its report.
fn status(
    registry: &Registry,
    sweep: &Sweep,
    experiment_dir: &Path,
    reports_dir: &Path,
) -> anyhow::Result<ExitCode> {
    let (record, refresh) = update_status(experiment_dir)?;
    if refresh.without_slurm {
        eprintln!(
            "warning: squeue is not on the PATH, so the trials' states come from their run \
             records alone (run --status on the cluster to see queued and running tasks)"
        );
    }
    Ok(conclude(registry, &record, sweep, reports_dir))
}

/// The trials' table and the sweep's report; success when no trial failed.
fn conclude(
    registry: &Registry,
    record: &SweepRecord,
    sweep: &Sweep,
    reports_dir: &Path,
) -> ExitCode {
    print_table(record);
    after_trials(registry, record, sweep, reports_dir);
    if record.succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// How local trials run, e.g. `2 trial(s) at once, 1 thread(s) each`.
fn local_text(at_once: usize, ranks: usize, threads: usize) -> String {
    match ranks {
        1 => format!("{at_once} trial(s) at once, {threads} thread(s) each"),
        _ => format!(
            "{at_once} trial(s) at once, each {ranks} ranks (mpirun) of {threads} thread(s)"
        ),
    }
}

/// Called once every trial has ended (or been submitted): the comparison report of the
/// finished trials (a report failure is reported but does not fail the sweep).
fn after_trials(registry: &Registry, record: &SweepRecord, sweep: &Sweep, reports_dir: &Path) {
    let Some(first) = sweep.trials.first() else {
        return;
    };
    match crate::report::sweep_report(registry, record, &first.loaded.spec, reports_dir) {
        Ok(index) => println!("report: {}", index.display()),
        Err(e) => eprintln!("warning: the sweep's report could not be written: {e:#}"),
    }
}

fn print_trials(sweep: &Sweep, plan: &SweepPlan) {
    println!(
        "sweep `{}`: {} trial(s) -> {}",
        sweep.base.spec.name,
        sweep.trials.len(),
        plan.experiment_dir().display()
    );
    for (t, trial_plan) in sweep.trials.iter().zip(&plan.plans) {
        let stages: Vec<String> = trial_plan
            .stages
            .iter()
            .map(|s| {
                let status = match s.status {
                    Status::Cached => "cached",
                    _ if plan.is_shared(s) => "shared",
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

/// Prints what the running sweep tells.
fn print_event(event: SweepEvent) {
    match event {
        SweepEvent::SharedStarting { stages } => println!(
            "shared stages (run once for every trial): {}",
            stages.join(", ")
        ),
        SweepEvent::SharedStage { id, dir, outcome } => match outcome {
            Outcome::Cached => println!("  {id:<12} cached     {}", dir.display()),
            Outcome::Ran { seconds } => {
                println!("  {id:<12} done {seconds:>5.1}s {}", dir.display())
            }
            Outcome::Failed { error } => {
                eprintln!("error: shared stage `{id}` failed, so no trial was started: {error}")
            }
        },
        SweepEvent::TrialEnded(trial) if trial.state == TrialState::Failed => print_failure(trial),
        SweepEvent::TrialEnded(trial) => println!("{}", progress_line(trial)),
        SweepEvent::LocalStarting {
            trials,
            at_once,
            ranks,
            threads,
        } => println!(
            "running {trials} trial(s), {}",
            local_text(at_once, ranks, threads)
        ),
        SweepEvent::NothingToSubmit => println!("every trial is cached; nothing to submit"),
        SweepEvent::Submitted { script, job: None } => println!(
            "sbatch is not on the PATH, so nothing was submitted; the job script is {}\n\
             submit it on the cluster with `sbatch {}`",
            script.display(),
            script.display()
        ),
        SweepEvent::Submitted {
            script,
            job: Some(job),
        } => println!(
            "Submitted batch job {job} (one array task per trial)\nscript: {}\n\
             follow it with `limoe sweep SPEC --status`",
            script.display()
        ),
        SweepEvent::Waiting { jobs } => println!(
            "waiting for Slurm job {}; Ctrl-C cancels it",
            jobs.join(", ")
        ),
        SweepEvent::Cancelled { signal, jobs } => eprintln!(
            "{signal}: cancelled Slurm job {} (scancel); waiting for its tasks to end",
            jobs.join(", ")
        ),
    }
}

/// A failed trial's line, its error and the tail of its log, on stderr.
fn print_failure(trial: &TrialRecord) {
    eprintln!("{}", progress_line(trial));
    if let Some(error) = &trial.error {
        eprintln!("  error: {error}");
    }
    for line in log_tail(&trial.log(), 12) {
        eprintln!("  | {line}");
    }
    eprintln!("  log: {}", trial.log().display());
}

/// The last `n` lines of `path` (none when it cannot be read).
fn log_tail(path: &Path, n: usize) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| (*l).to_owned())
        .collect()
}

/// One line for a trial that ended: id, state, seconds, key metric.
fn progress_line(t: &TrialRecord) -> String {
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
        "{} done, {} cached, {} failed, {} submitted, {} running",
        count(TrialState::Done),
        count(TrialState::Cached),
        count(TrialState::Failed),
        count(TrialState::Submitted),
        count(TrialState::Running)
    );
}
