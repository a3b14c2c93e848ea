//! Whether a spec can train on a placement: `world` ranks, in groups of `expert_parallel`
//! sharing the experts. One set of rules for the trainer at launch and for `limoe plan
//! --world N --expert-parallel P`.

use anyhow::{Context, bail};
use limoe_core::spec::Spec;
use limoe_model::plan::Placement;

use crate::budget::micro_batch;
use crate::data_parallel::check_routing_groups;

/// What the messages call the two numbers: the launch and the spec key, or the plan's flags
/// (`--world 64`, `--expert-parallel 32`).
pub struct Named {
    /// The number of ranks, as the user chose it.
    pub world: String,
    /// The expert-parallel group size, as the user chose it.
    pub expert_parallel: String,
}

/// Refuses a placement the spec cannot train on, saying what to change.
pub fn check(spec: &Spec, placement: Placement, named: &Named) -> anyhow::Result<()> {
    let Placement {
        world,
        expert_parallel: parts,
    } = placement;
    let Named {
        world: ranks,
        expert_parallel: sharing,
    } = named;
    let model = &spec.model;
    let experts = model.moe.experts;
    if parts > 1 && model.active_moe_blocks().is_empty() {
        bail!(
            "{sharing} shards experts, and a {:?} model has none; leave it at 1",
            model.arch
        );
    }
    if !experts.is_multiple_of(parts) {
        bail!(
            "{sharing} does not divide the {experts} experts of every MoE block \
             (model.moe.experts); use a divisor of {experts}"
        );
    }
    if !world.is_multiple_of(parts) {
        bail!(
            "{sharing} does not divide {ranks}: the ranks form groups of {parts}, each holding \
             the experts once; use a divisor of {world}, or a multiple of {parts} ranks"
        );
    }
    let micro = micro_batch(spec);
    if !micro.is_multiple_of(world) {
        bail!(
            "{ranks} do not split the micro-batch of {micro} pairs (train.batch_size {} / \
             train.accumulation {}) evenly; use a number of ranks that divides {micro}",
            spec.train.batch_size,
            spec.train.accumulation
        );
    }
    if world > 1 {
        let per_rank = micro / world;
        check_routing_groups(model, per_rank).with_context(|| {
            format!("{ranks} leave {per_rank} pairs of each micro-batch per rank")
        })?;
    }
    Ok(())
}
