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

mod expand;
mod load;
pub mod record;
mod sample;

pub use expand::{Override, OverrideValues, Trial, expand};
pub use load::{LoadedTrial, Sweep, SweepError, load_sweep, load_trial, trial_sets};
pub use record::{
    Metric, SWEEP_FILE, StageOutput, SweepRecord, TRIAL_LOG, TRIALS_DIR, TrialRecord, TrialState,
    key_metric, trial_dir,
};

#[cfg(test)]
mod tests;
