//! The Slurm executor: `<runs>/<experiment>/sweep.sbatch`, a job array with one task per
//! trial (resources from the spec's `executor.slurm`), each trial one `srun` of all the
//! task's ranks, submitted with `sbatch` when it is on the PATH.

use std::fmt::Write as _;
use std::path::{Path, absolute};
use std::process::Command;

use anyhow::{Context, bail};
use limoe_dist::World;

use super::events::SweepEvent;
use super::executor::{Executor, SweepContext, check_ranks, find_on_path};
use super::record::{SweepRecord, TRIAL_LOG, TRIALS_DIR, TrialState};
use super::slurm_wait::wait_for_tasks;
use crate::files::write_atomic;
use crate::interrupt;
use crate::shell::quote;

/// File name of the array script inside the experiment directory.
const SCRIPT: &str = "sweep.sbatch";

/// Trials as the tasks of a Slurm job array.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Slurm {
    /// Wait for the tasks to end once submitted, recording each trial as it ends (a signal
    /// cancels them), instead of returning at once.
    pub wait: bool,
}

/// The trials of `record` that go into the array (those not cached), in array order.
fn array_trials(record: &SweepRecord) -> impl Iterator<Item = usize> + '_ {
    (0..record.trials.len()).filter(|&i| record.trials[i].state != TrialState::Cached)
}

impl Slurm {
    /// The sbatch script running the trials of `record` that are not cached (in order).
    pub fn script(&self, sweep: &SweepContext, record: &SweepRecord) -> anyhow::Result<String> {
        let ids: Vec<&str> = array_trials(record)
            .map(|i| record.trials[i].id.as_str())
            .collect();
        if ids.is_empty() {
            bail!("every trial is cached; there is nothing to submit");
        }
        let exe = std::env::current_exe().context("cannot find the limoe binary")?;
        let runs = absolute(sweep.runs_dir)?;
        let trials = absolute(sweep.experiment_dir)?.join(TRIALS_DIR);
        let cwd = std::env::current_dir().context("cannot read the current directory")?;
        let spec = &sweep.sweep.base.spec;
        let slurm = &spec.executor.slurm;
        let mut s = String::new();
        let mut line = |text: String| {
            s.push_str(&text);
            s.push('\n');
        };
        line("#!/bin/bash".into());
        line(format!(
            "# Written by `limoe sweep --executor slurm` for {}: one array task per trial.",
            sweep.sweep.file.display()
        ));
        line(format!("#SBATCH --job-name=limoe-{}", spec.name));
        line(format!("#SBATCH --array=0-{}", ids.len() - 1));
        line(format!(
            "#SBATCH --output={}",
            trials.join("slurm-%A_%a.out").display()
        ));
        line(format!("#SBATCH --nodes={}", slurm.nodes));
        line(format!(
            "#SBATCH --ntasks-per-node={}",
            slurm.ntasks_per_node
        ));
        line(format!("#SBATCH --cpus-per-task={}", slurm.cpus));
        line(format!("#SBATCH --mem={}", slurm.mem));
        line(format!("#SBATCH --time={}", slurm.time));
        if let Some(partition) = &slurm.partition {
            line(format!("#SBATCH --partition={partition}"));
        }
        if slurm.node_gpus() > 0 {
            line(format!("#SBATCH --gres=gpu:{}", slurm.node_gpus()));
        }
        line("set -euo pipefail".into());
        line("TRIALS=(".into());
        for id in &ids {
            line(format!("  {}", quote(id)));
        }
        line(")".into());
        line("ID=\"${TRIALS[$SLURM_ARRAY_TASK_ID]}\"".into());
        line(format!(
            "export RAYON_NUM_THREADS=\"${{SLURM_CPUS_PER_TASK:-{}}}\"",
            slurm.cpus
        ));
        line(format!("cd {}", quote(&cwd.display().to_string())));
        line(format!(
            "DIR={}/\"$ID\"",
            quote(&trials.display().to_string())
        ));
        line("mkdir -p \"$DIR\"".into());
        // srun starts every rank of the allocation; since Slurm 22.05 it no longer takes
        // sbatch's --cpus-per-task by itself. One failed rank ends the others, which would
        // otherwise wait in a collective until the time limit.
        let mut srun = format!("srun --cpus-per-task={}", slurm.cpus);
        if slurm.ranks() > 1 {
            let _ = write!(srun, " --mpi={} --kill-on-bad-exit=1", slurm.mpi);
        }
        let mut command = format!(
            "{srun} {} --runs-dir {} -q run {} --trial \"$ID\"",
            quote(&exe.display().to_string()),
            quote(&runs.display().to_string()),
            quote(&absolute(&sweep.sweep.file)?.display().to_string()),
        );
        for set in &sweep.sweep.sets {
            let _ = write!(command, " --set {}", quote(set));
        }
        line(format!("{command} >\"$DIR/{TRIAL_LOG}\" 2>&1"));
        Ok(s)
    }
}

/// Submits the array script at `script` with `sbatch`, recording each trial's task; returns
/// the array's job id.
fn submit(sbatch: &Path, script: &Path, record: &mut SweepRecord) -> anyhow::Result<String> {
    let out = Command::new(sbatch)
        .arg("--parsable")
        .arg(script)
        .output()
        .with_context(|| format!("cannot run {}", sbatch.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "sbatch {} failed ({}): {}{}",
            script.display(),
            out.status,
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    // `--parsable` prints `<job>` or `<job>;<cluster>`.
    let job = stdout.trim().split(';').next().unwrap_or_default();
    if job.is_empty() || !job.chars().all(|c| c.is_ascii_digit()) {
        bail!(
            "sbatch {} printed `{}`, not a job id; the job may be queued: check with \
                 `squeue --me`",
            script.display(),
            stdout.trim()
        );
    }
    let trials: Vec<usize> = array_trials(record).collect();
    for (index, i) in trials.into_iter().enumerate() {
        record.trials[i].slurm_task = Some(format!("{job}_{index}"));
    }
    Ok(job.to_owned())
}

impl Executor for Slurm {
    fn name(&self) -> &'static str {
        "slurm"
    }

    /// Writes the script and submits it with `sbatch` (or only writes it when there is no
    /// `sbatch`); the trials it holds become `submitted`. With `wait`, then waits for them.
    fn run_trials(
        &self,
        sweep: &SweepContext,
        record: &mut SweepRecord,
        events: &mut dyn FnMut(SweepEvent),
    ) -> anyhow::Result<()> {
        if record.trials.iter().all(|t| t.state == TrialState::Cached) {
            events(SweepEvent::NothingToSubmit);
            return Ok(());
        }
        let slurm = &sweep.sweep.base.spec.executor.slurm;
        let setting = "executor.slurm (nodes x ntasks_per_node)";
        check_ranks(&sweep.sweep.file, setting, slurm.ranks(), World::JOINS_JOBS)?;
        let text = self.script(sweep, record)?;
        let path = absolute(sweep.experiment_dir)?.join(SCRIPT);
        write_atomic(&path, text.as_bytes())?;
        std::fs::create_dir_all(sweep.experiment_dir.join(TRIALS_DIR))?;
        for i in array_trials(record).collect::<Vec<_>>() {
            let trial = &mut record.trials[i];
            trial.prepare_run()?;
            trial.state = TrialState::Submitted;
        }
        let Some(sbatch) = find_on_path("sbatch") else {
            events(SweepEvent::Submitted {
                script: &path,
                job: None,
            });
            return Ok(());
        };
        // Caught from before the submission, so that a signal cannot end this process
        // between sbatch queueing the tasks and the record naming them.
        let _cancel_on_signal = self.wait.then(interrupt::Catch::install);
        let job = submit(&sbatch, &path, record)?;
        record.write(sweep.experiment_dir)?;
        events(SweepEvent::Submitted {
            script: &path,
            job: Some(&job),
        });
        if self.wait {
            wait_for_tasks(sweep, record, events)?;
        }
        Ok(())
    }
}
