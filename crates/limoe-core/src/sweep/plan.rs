//! The plans of a sweep's trials, the stages several of them share, and the record of a
//! sweep about to run.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use super::expand::OverrideValues;
use super::load::Sweep;
use super::record::{
    StageOutput, SweepRecord, TrialRecord, TrialState, key_metric, now, trial_dir,
};
use crate::runner::{Plan, PlannedStage, Runner};

/// A stage as trials share it: (stage id, cache key).
pub(super) type StageKey = (String, String);

/// The [`StageKey`] of `stage`.
pub(super) fn stage_key(stage: &PlannedStage) -> StageKey {
    (stage.id.clone(), stage.key.clone())
}

/// Every trial's plan, each recording into its own `trials/<id>/` directory, and the
/// stages that appear with the same id and cache key in two or more of them.
#[derive(Clone, Debug)]
pub struct SweepPlan {
    /// The trials' plans, in trial order.
    pub plans: Vec<Plan>,
    shared: HashSet<StageKey>,
}

impl SweepPlan {
    /// Plans every trial of `sweep`.
    pub fn new(runner: &Runner, sweep: &Sweep) -> anyhow::Result<SweepPlan> {
        let plans = (sweep.trials.iter())
            .map(|t| {
                let plan = runner.plan(&t.loaded, &[])?;
                let dir = trial_dir(&plan.experiment_dir, &t.trial.id);
                Ok(plan.recording_in(dir))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut counts: HashMap<StageKey, usize> = HashMap::new();
        for stage in plans.iter().flat_map(|plan| &plan.stages) {
            *counts.entry(stage_key(stage)).or_default() += 1;
        }
        let shared = counts
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(k, _)| k)
            .collect();
        Ok(SweepPlan { plans, shared })
    }

    /// `<runs>/<experiment>`, where the trials' stage outputs and records go.
    pub fn experiment_dir(&self) -> &Path {
        &self.plans[0].experiment_dir
    }

    /// True when `stage` appears in two or more trials (run once for all of them).
    pub fn is_shared(&self, stage: &PlannedStage) -> bool {
        self.shared.contains(&stage_key(stage))
    }

    /// The record of the sweep about to run on the executor `executor`: trials whose
    /// stages are all cached are `cached` (with their metric), the others `pending`.
    pub fn record(&self, sweep: &Sweep, executor: &str) -> SweepRecord {
        let trials = sweep
            .trials
            .iter()
            .zip(&self.plans)
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
                    slurm_task: None,
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
            spec: std::path::absolute(&sweep.file).unwrap_or_else(|_| sweep.file.clone()),
            sets: sweep.sets.clone(),
            executor: executor.into(),
            updated: now(),
            trials,
        }
    }
}
