//! What Slurm says of array tasks: `squeue` for the tasks it still holds (finished ones for
//! `MinJobAge`, 300 s by default), then `sacct` for the others where the cluster keeps
//! accounting.

use std::collections::{BTreeSet, HashMap};
use std::process::{Command, Output};

use anyhow::{Context, bail};

use super::executor::find_on_path;

/// How Slurm says an array task stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum TaskState {
    /// Waiting to start (`PENDING`, `REQUEUED`, ...).
    Queued,
    /// Started and not yet ended (`RUNNING`, `COMPLETING`, ...).
    Running,
    /// Ended, in Slurm's word for how (`COMPLETED`, `FAILED`, `CANCELLED`, `TIMEOUT`, ...).
    Ended(String),
}

/// Slurm's state of each of `tasks` (`<job>_<index>`) that it knows, by task; `None` when
/// `squeue` is not on the PATH (this is not a machine of the cluster).
pub(super) fn task_states(tasks: &[&str]) -> anyhow::Result<Option<HashMap<String, TaskState>>> {
    let Some(squeue) = find_on_path("squeue") else {
        return Ok(None);
    };
    let jobs: BTreeSet<&str> = tasks.iter().map(|t| job_of(t)).collect();
    let jobs = jobs.into_iter().collect::<Vec<_>>().join(",");
    let out = run(Command::new(&squeue)
        .args(["--noheader", "--array", "--states=all", "--format=%i|%T"])
        .arg(format!("--jobs={jobs}")))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut states: HashMap<String, TaskState> = if out.status.success() {
        parse(&String::from_utf8_lossy(&out.stdout))
    } else if stderr.contains("Invalid job id") {
        // squeue refuses a job list it holds nothing of.
        HashMap::new()
    } else {
        bail!(
            "`squeue --jobs={jobs}` failed ({}): {}",
            out.status,
            stderr.trim()
        );
    };
    let forgotten = tasks.iter().any(|t| !states.contains_key(*t));
    if let Some(sacct) = find_on_path("sacct").filter(|_| forgotten) {
        let out = run(Command::new(&sacct)
            .args(["--noheader", "--parsable2", "--allocations"])
            .args(["--format=JobID,State"])
            .arg(format!("--jobs={jobs}")))?;
        // Without accounting (`AccountingStorageType=accounting_storage/none`) sacct fails;
        // the tasks squeue forgot are then unknown.
        if out.status.success() {
            for (task, state) in parse(&String::from_utf8_lossy(&out.stdout)) {
                states.entry(task).or_insert(state);
            }
        }
    }
    states.retain(|task, _| tasks.contains(&task.as_str()));
    Ok(Some(states))
}

/// The array job of `task` (`42` of `42_3`).
pub(super) fn job_of(task: &str) -> &str {
    task.split_once('_').map_or(task, |(job, _)| job)
}

fn run(command: &mut Command) -> anyhow::Result<Output> {
    command
        .output()
        .with_context(|| format!("cannot run {:?}", command.get_program()))
}

/// `task|STATE ...` lines (squeue's `%i|%T`, sacct's `JobID,State`) as task -> state; lines
/// naming a range of tasks (sacct's `42_[1-3]`) are left out.
fn parse(text: &str) -> HashMap<String, TaskState> {
    text.lines()
        .filter_map(|line| {
            let (task, state) = line.trim().split_once('|')?;
            let word = state.split_whitespace().next()?;
            (!task.contains('[')).then(|| (task.to_owned(), classify(word)))
        })
        .collect()
}

/// Slurm's job state word (squeue's `%T`, sacct's `State`) as a [`TaskState`].
fn classify(word: &str) -> TaskState {
    match word {
        "PENDING" | "REQUEUED" | "REQUEUE_FED" | "REQUEUE_HOLD" | "RESV_DEL_HOLD" => {
            TaskState::Queued
        }
        "RUNNING" | "CONFIGURING" | "COMPLETING" | "SUSPENDED" | "STOPPED" | "SIGNALING"
        | "STAGE_OUT" | "RESIZING" => TaskState::Running,
        ended => TaskState::Ended(ended.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squeue_and_sacct_lines_are_read_by_task() {
        let squeue = "42_0|COMPLETED\n42_1|RUNNING\n42_2|PENDING\n";
        let states = parse(squeue);
        assert_eq!(states["42_0"], TaskState::Ended("COMPLETED".into()));
        assert_eq!(states["42_1"], TaskState::Running);
        assert_eq!(states["42_2"], TaskState::Queued);
        let sacct = "42_0|CANCELLED by 0\n42_[3-5]|PENDING\n42_6|TIMEOUT\n";
        let states = parse(sacct);
        assert_eq!(states.len(), 2, "{states:?}");
        assert_eq!(states["42_0"], TaskState::Ended("CANCELLED".into()));
        assert_eq!(states["42_6"], TaskState::Ended("TIMEOUT".into()));
        assert_eq!(job_of("42_6"), "42");
    }
}
