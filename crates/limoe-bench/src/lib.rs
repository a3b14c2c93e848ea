//! The benchmarks behind `limoe bench`: loader throughput on synthetic shards, the time of a
//! training step (LIMoE against its dense baseline, built from the experiment specs), and the
//! same step next to the PyTorch reference in `bench/reference.py`, and the step on several
//! ranks of this machine against one process. They print tables and
//! never fail for being slow; the `limoe` binary is their entry point.

mod context;
mod loader;
mod model;
mod scaling;
mod step;
mod summary;
mod timed;
mod torch;

use std::path::Path;
use std::process::ExitCode;

use limoe_core::Registry;
use limoe_dist::Communicator;

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
    /// The tiny step on 2 ranks of one core each (mpirun) against one process with every
    /// core, with and without the experts shared; skipped without MPI.
    Scaling,
    /// One rank of the scaling target's job (started by it under mpirun).
    #[value(hide = true)]
    ScalingRank,
}

impl Target {
    /// Every target `limoe bench` runs when none is named, in order.
    pub const ALL: [Target; 4] = [
        Target::Loader,
        Target::Model,
        Target::Torch,
        Target::Scaling,
    ];
}

/// `limoe bench [TARGET]...`: runs the named targets (all when none is named), in order.
/// With `export`, first writes the PyTorch comparison's inputs there, and runs the targets
/// only when some are named. `registry` checks the experiment specs the shapes start from, as
/// `limoe run` would; `comm` is the job a launcher started (a rank of the scaling target's).
pub fn bench(
    registry: &Registry,
    targets: &[Target],
    export: Option<&Path>,
    comm: &dyn Communicator,
) -> anyhow::Result<ExitCode> {
    if targets.contains(&Target::ScalingRank) {
        scaling::scaling_rank(registry, comm)?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(dir) = export {
        torch::export_all(registry, dir)?;
        if targets.is_empty() {
            return Ok(ExitCode::SUCCESS);
        }
    }
    println!("{}", context::context()?);
    let mut loader_rates = None;
    for target in Target::ALL {
        if targets.is_empty() || targets.contains(&target) {
            match target {
                Target::Loader => loader_rates = Some(loader::loader()?),
                Target::Model => model::model(registry, loader_rates.as_deref())?,
                Target::Torch => torch::torch(registry)?,
                Target::Scaling => scaling::scaling(registry)?,
                Target::ScalingRank => {}
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
