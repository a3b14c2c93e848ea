//! Using a trained model on a person's own inputs: the weights of a checkpoint loaded for
//! inference ([`load`]), images embedded ([`images`]), class names scored zero-shot
//! ([`classify`]), embeddings written as resumable Parquet parts ([`parts`]), and the expert
//! each patch and caption token goes to ([`route`]).

pub mod classify;
pub mod images;
pub mod parts;
pub mod route;

use std::path::Path;

use limoe_core::spec::Spec;

use crate::checkpoint;
use crate::model_build::{Built, build};

/// The spec's model with the weights of the checkpoint directory `checkpoint`, routing at
/// evaluation without a capacity (`model.moe.capacity.eval: null`): each token then goes to
/// its top experts whatever else is in its batch, so what a person gets for an input does not
/// depend on the batch size or on the inputs named with it.
pub fn load(spec: &Spec, checkpoint: &Path) -> anyhow::Result<Built> {
    let mut spec = spec.clone();
    spec.model.moe.capacity.eval = None;
    let built = build(&spec)?;
    checkpoint::load_params(checkpoint, &built.vars)?;
    Ok(built)
}
