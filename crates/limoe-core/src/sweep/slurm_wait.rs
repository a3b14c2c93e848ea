//! Waiting for a sweep's Slurm tasks (`limoe sweep --executor slurm --wait`): each trial is
//! recorded as it ends, and a signal cancels the tasks (`scancel`).

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::events::SweepEvent;
use super::executor::{SweepContext, find_on_path};
use super::record::SweepRecord;
use super::slurm_states::job_of;
use super::status::refresh_status;
use crate::interrupt;

/// How often a waiting sweep asks Slurm how its tasks stand.
const POLL: Duration = Duration::from_secs(2);

/// Waits until every trial of `record` has ended, telling `events` of each and keeping
/// `sweep.json` up to date. The first signal cancels the sweep's jobs (Slurm then sends
/// SIGTERM to the running trials, which stop at a checkpoint) and the wait goes on until
/// Slurm has ended them.
pub(super) fn wait_for_tasks(
    sweep: &SweepContext,
    record: &mut SweepRecord,
    events: &mut dyn FnMut(SweepEvent),
) -> anyhow::Result<()> {
    let jobs: Vec<String> = (record.trials.iter())
        .filter_map(|t| t.slurm_task.as_deref().map(job_of))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(String::from)
        .collect();
    events(SweepEvent::Waiting { jobs: &jobs });
    let mut cancelled = false;
    loop {
        if let Some(signal) = interrupt::requested()
            && !cancelled
        {
            cancel(&jobs)?;
            events(SweepEvent::Cancelled {
                signal,
                jobs: &jobs,
            });
            cancelled = true;
        }
        let refresh = refresh_status(record)?;
        if refresh.without_slurm {
            bail!(
                "cannot wait for the trials: squeue is not on the PATH; follow them with \
                 `limoe sweep SPEC --status` on the cluster"
            );
        }
        for &i in &refresh.ended {
            events(SweepEvent::TrialEnded(&record.trials[i]));
        }
        if !refresh.ended.is_empty() {
            record.write(sweep.experiment_dir)?;
        }
        if record.trials.iter().all(|t| t.state.ended()) {
            return Ok(());
        }
        let asleep = Instant::now();
        while asleep.elapsed() < POLL && (cancelled || interrupt::requested().is_none()) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `scancel JOB...`.
fn cancel(jobs: &[String]) -> anyhow::Result<()> {
    let scancel = find_on_path("scancel").context("scancel is not on the PATH")?;
    let out = Command::new(&scancel)
        .args(jobs)
        .output()
        .with_context(|| format!("cannot run {}", scancel.display()))?;
    if !out.status.success() {
        bail!(
            "`scancel {}` failed ({}): {}; cancel the jobs yourself",
            jobs.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
