//! Bringing a sweep's record up to date: each trial that has not ended from its run record
//! (`last-run.json`, written when the run ends), and one without a record from what Slurm
//! says of its array task.

use std::path::Path;

use super::record::{SweepRecord, TrialState, now};
use super::slurm_states::{TaskState, task_states};

/// What [`refresh_status`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatusRefresh {
    /// The trials (indices into the record's) that ended since it was last refreshed.
    pub ended: Vec<usize>,
    /// True when trials are Slurm tasks but `squeue` is not on the PATH, so their states
    /// come from their run records alone.
    pub without_slurm: bool,
}

/// Updates every trial of `record` that has not ended, and every failed Slurm task (its run
/// record may show up late on a shared file system, or Slurm requeue it). A trial without a
/// run record is `submitted` or `running` as long as Slurm holds its task, and `failed` once
/// the task ended (or Slurm forgot it) without one: killed at its time limit, cancelled, or
/// lost with its node.
pub(super) fn refresh_status(record: &mut SweepRecord) -> anyhow::Result<StatusRefresh> {
    let open: Vec<usize> = (0..record.trials.len())
        .filter(|&i| {
            let trial = &record.trials[i];
            !trial.state.ended()
                || (trial.state == TrialState::Failed && trial.slurm_task.is_some())
        })
        .collect();
    let tasks: Vec<&str> = (open.iter())
        .filter_map(|&i| record.trials[i].slurm_task.as_deref())
        .collect();
    let slurm = match tasks.is_empty() {
        true => None,
        false => task_states(&tasks)?,
    };
    let mut refresh = StatusRefresh {
        ended: Vec::new(),
        without_slurm: !tasks.is_empty() && slurm.is_none(),
    };
    for i in open {
        let trial = &mut record.trials[i];
        let was_open = !trial.state.ended();
        if !trial.refresh()
            && let (Some(task), Some(states)) = (&trial.slurm_task, &slurm)
        {
            let out = (trial.record_dir).with_file_name(format!("slurm-{task}.out"));
            let gone = |how: String| format!("{how} without a run record; see {}", out.display());
            match states.get(task) {
                Some(TaskState::Queued) => trial.state = TrialState::Submitted,
                Some(TaskState::Running) => trial.state = TrialState::Running,
                Some(TaskState::Ended(word)) => {
                    trial.state = TrialState::Failed;
                    trial.error = Some(gone(format!("Slurm task {task} ended {word}")));
                }
                None if was_open => {
                    trial.state = TrialState::Failed;
                    trial.error = Some(gone(format!(
                        "Slurm task {task} ended (Slurm no longer lists it)"
                    )));
                }
                // A failed task Slurm has since forgotten keeps what was said of it.
                None => {}
            }
        }
        if was_open && trial.state.ended() {
            refresh.ended.push(i);
        }
    }
    Ok(refresh)
}

/// `limoe sweep SPEC --status`: `<experiment_dir>/sweep.json` refreshed (and written back).
pub fn update_status(experiment_dir: &Path) -> anyhow::Result<(SweepRecord, StatusRefresh)> {
    let mut record = SweepRecord::read(experiment_dir)?;
    let refresh = refresh_status(&mut record)?;
    record.updated = now();
    record.write(experiment_dir)?;
    Ok((record, refresh))
}
