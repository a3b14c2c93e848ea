//! `sweep.json`: the record of a sweep's trials, read by the comparison report.
//!
//! A sweep of experiment `E` keeps its stage outputs where a plain run does
//! (`<runs>/E/<stage>-<key>/`, shared by trials through the cache) and each trial's records in
//! `<runs>/E/trials/<trial-id>/`: `specs/` (the trial's resolved spec), `last-run.json`
//! (its [`RunReport`], naming that spec) and `log.txt` (its output). `<runs>/E/sweep.json` lists the trials
//! (all paths in it absolute); `<runs>/E/shared/` records the run of the stages several trials
//! share, which `limoe sweep` runs once before the trials; `<runs>/E/sweep.sbatch` is the
//! Slurm array script of `--executor slurm` (Slurm's own output goes to
//! `trials/slurm-<job>_<task>.out`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::expand::OverrideValues;
use crate::files::write_atomic;
use crate::records::{EvalSummary, SUMMARY_FILE, read_record};
use crate::runner::{LAST_RUN, Outcome, RunReport};

/// File name of the sweep record inside the experiment directory.
pub const SWEEP_FILE: &str = "sweep.json";
/// Directory of the trials' records inside the experiment directory.
pub const TRIALS_DIR: &str = "trials";
/// File name of a trial's output inside its record directory.
pub const TRIAL_LOG: &str = "log.txt";

/// The current time (RFC 3339, UTC), as records are stamped.
pub(super) fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// `<experiment_dir>/trials/<id>`: where a trial's records go.
pub fn trial_dir(experiment_dir: &Path, id: &str) -> PathBuf {
    experiment_dir.join(TRIALS_DIR).join(id)
}

/// The whole `sweep.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SweepRecord {
    /// Experiment name (the directory under the runs directory).
    pub experiment: String,
    /// The sweep's spec file, as given.
    pub spec: PathBuf,
    /// `--set` arguments given to the whole sweep.
    pub sets: Vec<String>,
    /// `local` or `slurm`.
    pub executor: String,
    /// When the record was last written (RFC 3339, UTC).
    pub updated: String,
    /// Every trial, in expansion order.
    pub trials: Vec<TrialRecord>,
}

/// One trial of a sweep.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TrialRecord {
    /// The trial id, e.g. `setting=none,seed=1`.
    pub id: String,
    /// What the trial changes in the base spec: dotted path -> value, in order.
    pub overrides: OverrideValues,
    /// `trials/<id>/` under the experiment directory: `specs/`, `last-run.json`, `log.txt`.
    pub record_dir: PathBuf,
    /// How the trial ended (or that it has not yet).
    pub state: TrialState,
    /// Wall-clock seconds of the trial (`None` when it did not run here).
    pub seconds: Option<f64>,
    /// The key metric from the trial's eval summary, if there is one.
    pub metric: Option<Metric>,
    /// The trial's stages and their output directories, in execution order.
    pub stages: Vec<StageOutput>,
    /// The error of a failed trial.
    pub error: Option<String>,
    /// The trial's Slurm array task (`<job>_<index>`, as `squeue` and `scancel` take it) once
    /// `sbatch` has queued it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm_task: Option<String>,
}

/// How a trial stands.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TrialState {
    /// Not run yet.
    Pending,
    /// Handed to Slurm, not yet started; `limoe sweep --status` reads how it goes on.
    Submitted,
    /// Started by Slurm, not yet ended.
    Running,
    /// Ran (some stages may have been cached).
    Done,
    /// Every stage was cached; nothing ran.
    Cached,
    /// A stage failed or the trial could not start.
    Failed,
}

impl TrialState {
    /// The word shown in progress lines and tables.
    pub fn word(self) -> &'static str {
        match self {
            TrialState::Pending => "pending",
            TrialState::Submitted => "submitted",
            TrialState::Running => "running",
            TrialState::Done => "done",
            TrialState::Cached => "cached",
            TrialState::Failed => "failed",
        }
    }

    /// True for the states a trial ends in (done, cached, failed).
    pub fn ended(self) -> bool {
        matches!(
            self,
            TrialState::Done | TrialState::Cached | TrialState::Failed
        )
    }
}

/// One named metric value.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Metric {
    /// Its key in `summary.json`, e.g. `synthetic/zero_shot_top1`.
    pub name: String,
    /// Its value.
    pub value: f64,
}

/// One stage of a trial and its output directory.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StageOutput {
    /// Stage id.
    pub id: String,
    /// Stage kind (`ingest`, `train`, `eval`, ...).
    pub kind: String,
    /// Output directory (`<runs>/<experiment>/<id>-<key>`).
    pub dir: PathBuf,
}

impl SweepRecord {
    /// The path of `sweep.json` in `experiment_dir`.
    pub fn path(experiment_dir: &Path) -> PathBuf {
        experiment_dir.join(SWEEP_FILE)
    }

    /// Reads `<experiment_dir>/sweep.json` as it was last written.
    pub fn read(experiment_dir: &Path) -> anyhow::Result<SweepRecord> {
        let path = SweepRecord::path(experiment_dir);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read {}; run `limoe sweep SPEC` to make it",
                path.display()
            )
        })?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not a sweep record", path.display()))
    }

    /// Writes `<experiment_dir>/sweep.json` atomically.
    pub fn write(&self, experiment_dir: &Path) -> anyhow::Result<()> {
        write_atomic(
            &SweepRecord::path(experiment_dir),
            serde_json::to_string_pretty(self)?.as_bytes(),
        )
    }

    /// Updates every trial that has not ended from its `last-run.json` (for trials run
    /// elsewhere, e.g. by Slurm); trials without one are left as they are.
    pub fn refresh(&mut self) {
        for trial in &mut self.trials {
            if !trial.state.ended() {
                trial.refresh();
            }
        }
    }

    /// True when no trial failed.
    pub fn succeeded(&self) -> bool {
        self.trials.iter().all(|t| t.state != TrialState::Failed)
    }
}

impl TrialRecord {
    /// The trial's output (`log.txt` in its record directory).
    pub fn log(&self) -> PathBuf {
        self.record_dir.join(TRIAL_LOG)
    }

    /// Readies the record directory for a new run: made if missing, without the
    /// `last-run.json` of an earlier run, which must not pass for this one's.
    pub fn prepare_run(&self) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.record_dir)
            .with_context(|| format!("cannot create {}", self.record_dir.display()))?;
        match std::fs::remove_file(self.record_dir.join(LAST_RUN)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).with_context(|| {
                format!(
                    "cannot remove the old record in {}",
                    self.record_dir.display()
                )
            }),
            _ => Ok(()),
        }
    }

    /// The output directory of stage `id`.
    pub fn stage_dir(&self, id: &str) -> Option<&Path> {
        self.stages
            .iter()
            .find(|s| s.id == id)
            .map(|s| s.dir.as_path())
    }

    /// The eval summary of the trial (`summary.json` of its last eval stage, else of any
    /// stage that wrote one): metric name -> value.
    pub fn summary(&self) -> Option<EvalSummary> {
        let evals = self.stages.iter().rev().filter(|s| s.kind == "eval");
        let others = self.stages.iter().rev().filter(|s| s.kind != "eval");
        evals
            .chain(others)
            .find_map(|s| read_record(&s.dir, SUMMARY_FILE).ok().flatten())
    }

    /// Sets state, seconds, error and metric from the trial's `last-run.json`; false (and
    /// nothing changed) when there is none.
    pub fn refresh(&mut self) -> bool {
        let Ok(report) = RunReport::read(&self.record_dir) else {
            return false;
        };
        let outcomes = || report.stages.iter().map(|(_, _, o)| o);
        self.error = outcomes().find_map(|o| match o {
            Outcome::Failed { error } => Some(error.clone()),
            _ => None,
        });
        self.state = if self.error.is_some() {
            TrialState::Failed
        } else if outcomes().all(|o| *o == Outcome::Cached) {
            TrialState::Cached
        } else {
            TrialState::Done
        };
        self.seconds = Some(
            outcomes()
                .map(|o| match o {
                    Outcome::Ran { seconds } => *seconds,
                    _ => 0.0,
                })
                .sum(),
        );
        self.metric = self.summary().as_ref().and_then(key_metric);
        true
    }
}

/// The metric a sweep ranks trials by: a `*/zero_shot_top1` (the first by name), else
/// `all/retrieval_i2t_r1`, else none.
pub fn key_metric(summary: &BTreeMap<String, f64>) -> Option<Metric> {
    summary
        .iter()
        .find(|(k, _)| k.ends_with("/zero_shot_top1"))
        .or_else(|| summary.get_key_value("all/retrieval_i2t_r1"))
        .map(|(name, value)| Metric {
            name: name.clone(),
            value: *value,
        })
}
