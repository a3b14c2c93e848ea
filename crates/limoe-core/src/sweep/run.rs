//! Running a sweep: the shared stages once, then the trials on an executor, recorded in
//! `sweep.json`.

use anyhow::bail;

use super::events::SweepEvent;
use super::executor::{Executor, SweepContext};
use super::plan::SweepPlan;
use super::record::{SweepRecord, TrialState, now};
use super::shared::run_shared;
use crate::interrupt;
use crate::runner::Runner;

/// Runs the sweep of `sweep` as `plan` (made by `runner` before anything ran) has it: the
/// pending shared stages once, then every trial not cached on `executor`. Returns the
/// record, also written to `sweep.json`; `None` when a shared stage failed and no trial was
/// started. Trials found cached are told to `events` as ended.
pub fn run_sweep(
    runner: &Runner,
    sweep: &SweepContext,
    plan: &SweepPlan,
    executor: &dyn Executor,
    events: &mut dyn FnMut(SweepEvent),
) -> anyhow::Result<Option<SweepRecord>> {
    if !run_shared(runner, sweep.sweep, plan, events)? {
        return Ok(None);
    }
    // Shared stages are now cached; trials whose every stage is cached are not started.
    let plan = SweepPlan::new(runner, sweep.sweep)?;
    let mut record = plan.record(sweep.sweep, executor.name());
    for trial in &record.trials {
        if trial.state == TrialState::Cached {
            events(SweepEvent::TrialEnded(trial));
        }
    }
    executor.run_trials(sweep, &mut record, events)?;
    record.updated = now();
    record.write(sweep.experiment_dir)?;
    if let Some(signal) = interrupt::requested() {
        bail!(
            "{signal}: the sweep stopped, its running trials at a checkpoint; rerun `limoe \
             sweep` to continue"
        );
    }
    Ok(Some(record))
}
