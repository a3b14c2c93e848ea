//! Expert parallelism in training (`train.expert_parallel: P`): the world's ranks form
//! groups of P consecutive ranks, each group holding one copy of the experts spread over its
//! ranks, and data parallelism runs across all ranks as before.
//!
//! The gradient of an expert share on a rank already sums over the tokens of its whole group
//! (the all-to-all's backward brings them back), so it is summed over the ranks that hold
//! the same share, one per group (the "replicas"); dense gradients are summed over every
//! rank. Together that is the gradient one process computes.

use std::sync::Arc;

use anyhow::bail;
use candle_core::Var;
use candle_core::backprop::GradStore;
use limoe_dist::Communicator;
use limoe_model::moe::ExpertGroup;
use limoe_model::moe::experts::is_expert_param;

use crate::data_parallel::all_reduce_grads;

/// The ranks a rank shares its experts with, and those holding the same share: none when
/// every rank holds every expert.
pub struct RankGroups {
    /// The ranks sharing this rank's copy of the experts, when they are shared.
    group: Option<ExpertGroup>,
    /// The ranks holding the same share as this one, one per group.
    replicas: Option<Box<dyn Communicator>>,
    /// Whether this rank shares its experts with rank 0 (which writes the checkpoints).
    with_root: bool,
}

impl RankGroups {
    /// Groups `comm`'s ranks by `parts` (a collective: every rank calls it), a number of
    /// ranks that [`crate::placement::check`] accepted; `parts` 1 keeps every expert on every
    /// rank.
    pub fn new(comm: &dyn Communicator, parts: usize) -> anyhow::Result<RankGroups> {
        if parts <= 1 {
            return Ok(RankGroups {
                group: None,
                replicas: None,
                with_root: comm.rank() == 0,
            });
        }
        if !comm.size().is_multiple_of(parts) {
            bail!("{} ranks do not form groups of {parts}", comm.size());
        }
        let rank = comm.rank();
        let group = comm.split((rank / parts) as u32);
        let replicas = comm.split((rank % parts) as u32);
        tracing::info!(
            "train: experts shared by groups of {parts} ranks; this rank holds share {} of \
             group {}",
            rank % parts,
            rank / parts
        );
        Ok(RankGroups {
            group: Some(ExpertGroup::new(Arc::from(group))),
            replicas: Some(replicas),
            with_root: rank / parts == 0,
        })
    }

    /// The expert group, when experts are shared.
    pub fn group(&self) -> Option<&ExpertGroup> {
        self.group.as_ref()
    }

    /// Whether this rank takes part in writing a checkpoint: rank 0, and under expert
    /// parallelism the ranks of its group, which send it their shares. The other groups hold
    /// copies of the same shares, so they need not gather whole experts they would not write.
    pub fn writes_checkpoints(&self) -> bool {
        self.with_root
    }

    /// Sums every gradient over the ranks that hold the same parameter (see the module
    /// documentation); `after_gather` as in [`all_reduce_grads`].
    pub fn reduce_grads(
        &self,
        world: &dyn Communicator,
        params: &[(String, Var)],
        grads: &GradStore,
        after_gather: &[&str],
    ) -> candle_core::Result<GradStore> {
        let Some(replicas) = &self.replicas else {
            return all_reduce_grads(world, params, grads, after_gather);
        };
        let (experts, dense): (Vec<_>, Vec<_>) =
            (params.iter().cloned()).partition(|(name, _)| is_expert_param(name));
        let mut reduced = all_reduce_grads(world, &dense, grads, after_gather)?;
        let summed = all_reduce_grads(replicas.as_ref(), &experts, grads, &[])?;
        for (_, var) in &experts {
            if let Some(grad) = summed.get(var.as_tensor()) {
                reduced.insert(var.as_tensor(), grad.clone());
            }
        }
        Ok(reduced)
    }
}
