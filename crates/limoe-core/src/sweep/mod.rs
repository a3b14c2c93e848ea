//! Sweeps: one spec's `sweep` section expanded into trials, each a spec of its own.
//!
//! ```yaml
//! sweep:
//!   cases:                      # named axes of named override sets
//!     setting:
//!       none:  {model.aux.local_entropy: {image: 0, text: 0}}
//!       dense: {model.arch: dense}
//!   grid: {train.lr: [0.001, 0.0003]}         # cartesian product
//!   zip: {model.moe.experts: [4, 8], model.moe.top_k: [1, 2]}   # taken pairwise
//!   random: {trials: 4, seed: 0, params: {train.lr: {log_uniform: [1e-4, 1e-2]}}}
//!   seeds: [0, 1, 2]            # every trial once per seed (sets the top-level `seed`)
//! ```
//!
//! The trials are the product of, outermost first, each `cases` axis, each `grid` key, the
//! `zip` lists, the `random` samples and the `seeds`, in file order. A trial's id joins
//! `axis=case`, `<last path segment>=<value>` (the whole path when two swept paths share a
//! last segment), `r<i>` with the sampled values, and `seed=N` with `,`; e.g.
//! `setting=dense,lr=0.001,seed=2`. Each trial is the base spec with its overrides applied
//! like `--set` (before defaults and checks), an empty `sweep` and the same `name`, so
//! trials share stage outputs whose cache keys agree (see [`record`] for the layout).
//!
//! [`load_sweep`] validates every trial; [`SweepPlan`] plans them and finds the stages
//! several share; [`run_sweep`] runs those once, then hands the trials to an [`Executor`]
//! ([`Local`] child processes, or a [`Slurm`] job array) and keeps `sweep.json` up to date,
//! telling its caller what happens as [`SweepEvent`]s; [`update_status`] brings the record
//! of trials that run elsewhere (Slurm tasks) up to date.

mod events;
mod executor;
mod expand;
mod load;
mod local;
mod plan;
pub mod record;
mod run;
mod sample;
mod shared;
mod slurm;
mod slurm_states;
mod slurm_wait;
mod status;

pub use events::SweepEvent;
pub use executor::{Executor, SweepContext};
pub use expand::{Override, OverrideValues, Trial, expand};
pub use load::{LoadedTrial, Sweep, SweepError, load_sweep, load_trial, trial_sets};
pub use local::Local;
pub use plan::SweepPlan;
pub use record::{
    Metric, SWEEP_FILE, StageOutput, SweepRecord, TRIAL_LOG, TRIALS_DIR, TrialRecord, TrialState,
    key_metric, trial_dir,
};
pub use run::run_sweep;
pub use slurm::Slurm;
pub use status::{StatusRefresh, update_status};

#[cfg(test)]
mod tests;
