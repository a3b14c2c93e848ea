//! A spec's model built on its device, with the preprocessing that matches it: what both
//! training and evaluation start from.

use anyhow::bail;
use candle_core::{Device, Var};
use limoe_core::spec::Spec;
use limoe_data::batch::Preprocess;
use limoe_model::moe::ExpertGroup;
use limoe_model::{Model, Params};

use crate::budget::{Placement, available_bytes, describe, spec_cost};
use crate::inputs::preprocess;

/// A model and its parameters, built for a spec on its device.
pub struct Built {
    /// The model.
    pub model: Model,
    /// Its parameters, by name.
    pub vars: Vec<(String, Var)>,
    /// The device it lives on.
    pub device: Device,
    /// Image and caption preprocessing for it.
    pub preprocess: Preprocess,
}

/// Fails, with the plan's numbers, when training the spec's model needs more memory than
/// the device has available. Counted for one process, which holds the most: the stage's
/// preflight sees the spec but not the launch's world size (crates/limoe-core/src/stage.rs).
pub fn check_fits(spec: &Spec) -> anyhow::Result<()> {
    let cost = spec_cost(spec, Placement::SOLO);
    if let Some(free) = available_bytes(spec.train.device)
        && cost.training_bytes() > free
    {
        bail!(
            "the model does not fit, so training was not started:\n  {}",
            describe(spec, &cost, Some(free)).join("\n  ")
        );
    }
    Ok(())
}

/// Checks that training fits the device, then builds the model with seeded weights.
pub fn build(spec: &Spec) -> anyhow::Result<Built> {
    build_placed(spec, None)
}

/// [`build`] holding, with an expert `group`, this rank's share of the experts.
pub fn build_placed(spec: &Spec, group: Option<&ExpertGroup>) -> anyhow::Result<Built> {
    check_fits(spec)?;
    let device = limoe_model::device::open(spec.train.device)?;
    let params = Params::new(spec.seed);
    let model = Model::with_experts_of(&spec.model, &params, &device, group)?;
    Ok(Built {
        model,
        vars: params.vars(),
        device,
        preprocess: preprocess(&spec.model)?,
    })
}
