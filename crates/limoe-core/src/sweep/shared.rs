//! Running the stages several trials share, once, before any trial starts.

use std::collections::HashSet;

use super::events::SweepEvent;
use super::load::Sweep;
use super::plan::{SweepPlan, stage_key};
use crate::runner::{Outcome, Runner, Status};

/// Runs every pending shared stage of `plan` once, in this process, recording the runs in
/// `<experiment>/shared/`. False when one fails: every trial needing it would fail the same
/// way, so none should start.
pub(super) fn run_shared(
    runner: &Runner,
    sweep: &Sweep,
    plan: &SweepPlan,
    events: &mut dyn FnMut(SweepEvent),
) -> anyhow::Result<bool> {
    let mut built = HashSet::new();
    for (t, trial_plan) in sweep.trials.iter().zip(&plan.plans) {
        let needed = trial_plan.stages.iter().any(|s| {
            plan.is_shared(s) && s.status != Status::Cached && !built.contains(&stage_key(s))
        });
        if !needed {
            continue;
        }
        // Upstream stages of a shared stage are shared too (their keys feed its key).
        let sub = trial_plan
            .clone()
            .only(|s| plan.is_shared(s))
            .recording_in(trial_plan.experiment_dir.join("shared"));
        let ids: Vec<&str> = sub.stages.iter().map(|s| s.id.as_str()).collect();
        events(SweepEvent::SharedStarting { stages: &ids });
        let report = runner.execute(&t.loaded, &sub)?;
        for (id, dir, outcome) in &report.stages {
            events(SweepEvent::SharedStage { id, dir, outcome });
            if matches!(outcome, Outcome::Failed { .. }) {
                return Ok(false);
            }
        }
        built.extend(sub.stages.iter().map(stage_key));
    }
    Ok(true)
}
