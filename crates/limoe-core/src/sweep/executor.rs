//! Where a sweep's trials run: the [`Executor`] trait its local and Slurm executors
//! implement. A trial is a `limoe run` process, which sets its own training environment.

use std::path::Path;

use super::events::SweepEvent;
use super::load::Sweep;
use super::record::SweepRecord;

/// What the executors need to know of the sweep they run.
#[derive(Clone, Copy, Debug)]
pub struct SweepContext<'a> {
    /// The loaded sweep (its spec file and `--set` arguments are passed to every trial).
    pub sweep: &'a Sweep,
    /// The runs directory, absolute, so that trials find it from anywhere.
    pub runs_dir: &'a Path,
    /// `<runs>/<experiment>`, where `sweep.json` and the trials' records go.
    pub experiment_dir: &'a Path,
}

/// Runs the trials of a sweep as `limoe run SPEC --trial ID` somewhere.
pub trait Executor {
    /// Its name in `sweep.json`.
    fn name(&self) -> &'static str;

    /// Runs (or hands off) every pending trial of `record`, updating their states as they
    /// end and telling `events` about them.
    fn run_trials(
        &self,
        sweep: &SweepContext,
        record: &mut SweepRecord,
        events: &mut dyn FnMut(SweepEvent),
    ) -> anyhow::Result<()>;
}
