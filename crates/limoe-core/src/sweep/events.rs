//! What a running sweep tells its caller, who reports it (the library prints nothing).

use std::path::Path;

use super::record::TrialRecord;
use crate::runner::Outcome;

/// Something that happened while a sweep ran.
#[derive(Clone, Copy, Debug)]
pub enum SweepEvent<'a> {
    /// Stages several trials share are about to run once, for all of them.
    SharedStarting {
        /// Their ids, in execution order.
        stages: &'a [&'a str],
    },
    /// A shared stage ended; when it failed, no trial is started.
    SharedStage {
        /// Stage id.
        id: &'a str,
        /// Its output directory.
        dir: &'a Path,
        /// How it ended.
        outcome: &'a Outcome,
    },
    /// A trial ended (done, failed, or found cached without running).
    TrialEnded(&'a TrialRecord),
    /// The local executor starts `trials` trials, `at_once` at a time.
    LocalStarting {
        /// Trials to run.
        trials: usize,
        /// Trials running at once.
        at_once: usize,
        /// Ranks of each trial (`mpirun -np` when more than 1).
        ranks: usize,
        /// Threads of each rank.
        threads: usize,
    },
    /// Every trial is cached: there was nothing to submit to Slurm.
    NothingToSubmit,
    /// The Slurm array script was written, and submitted when `sbatch` is on the PATH.
    Submitted {
        /// The script.
        script: &'a Path,
        /// The array's job id; `None` when there is no `sbatch` here to submit it.
        job: Option<&'a str>,
    },
    /// The sweep waits for its Slurm jobs to end (`--wait`).
    Waiting {
        /// Their job ids.
        jobs: &'a [String],
    },
    /// A signal cancelled the sweep's Slurm jobs (`scancel`); it waits for them to end.
    Cancelled {
        /// The signal.
        signal: &'a str,
        /// The job ids.
        jobs: &'a [String],
    },
}
