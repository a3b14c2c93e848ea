//! The benchmarks behind `limoe bench`: loader throughput on synthetic shards, the time of a
//! training step (LIMoE against its dense baseline, built from the experiment specs), and the
//! same step next to the PyTorch reference in `bench/reference.py`. They print tables and
//! never fail for being slow; the `limoe` binary is their entry point.

mod loader;
mod model;
mod step;
mod summary;
mod torch;

use std::path::Path;
use std::process::ExitCode;

use limoe_core::Registry;

/// What `limoe bench` can measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// Loader throughput (decode + resize + patchify + tokenize + batch) on synthetic shards.
    Loader,
    /// Forward + backward time of a training step, LIMoE and dense, tiny, t128 and S/16 shapes.
    Model,
    /// The same step in the PyTorch reference (bench/reference.py), checked and timed side by
    /// side; skipped with a note when python3 cannot import torch.
    Torch,
}

impl Target {
    /// Every target, in the order `limoe bench` runs them.
    pub const ALL: [Target; 3] = [Target::Loader, Target::Model, Target::Torch];
}

/// `limoe bench [TARGET]...`: runs the named targets (all when none is named), in order.
/// With `export`, first writes the PyTorch comparison's inputs there, and runs the targets
/// only when some are named. `registry` checks the experiment specs the shapes start from, as
/// `limoe run` would.
pub fn bench(
    registry: &Registry,
    targets: &[Target],
    export: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    if let Some(dir) = export {
        torch::export_all(registry, dir)?;
        if targets.is_empty() {
            return Ok(ExitCode::SUCCESS);
        }
    }
    let mut loader_rates = None;
    for target in Target::ALL {
        if targets.is_empty() || targets.contains(&target) {
            match target {
                Target::Loader => loader_rates = Some(loader::loader()?),
                Target::Model => model::model(registry, loader_rates.as_deref())?,
                Target::Torch => torch::torch(registry)?,
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
