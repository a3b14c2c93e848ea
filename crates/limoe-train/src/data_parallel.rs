//! Data parallelism over the ranks of a job: the contrastive loss's negatives gathered from
//! every rank, and the gradients summed over the ranks in buckets.
//!
//! Every rank computes the same loss over the whole global batch, but its gradient flows
//! only through its own rows of the gathered embeddings. Summing the ranks' gradients
//! therefore gives the gradient of that loss, as one process computing the whole batch
//! would (open_clip's gathered features with the local rows replaced by their
//! grad-carrying originals). Routing groups hold whole examples and never span ranks, so
//! MoE routing matches one process's when each rank's share is whole groups.

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};
use limoe_core::spec::ModelSpec;
use limoe_dist::Communicator;

/// Values per all-reduce: gradients are packed into buckets of about this many f32s (16 MiB)
/// rather than reduced one tensor at a time, so that small tensors do not each pay a
/// collective's latency.
const BUCKET_VALUES: usize = 1 << 22;

/// Every rank's `local` rows [b, E] stacked in rank order [size * b, E]; this rank's rows
/// are `local` itself (with its gradient), the others plain values.
pub fn gather_rows(comm: &dyn Communicator, local: &Tensor) -> Result<Tensor> {
    if comm.size() == 1 {
        return Ok(local.clone());
    }
    let (rows, width) = local.dims2()?;
    let values: Vec<f32> = local.flatten_all()?.to_vec1()?;
    let all = comm.all_gather(&values);
    let block = rows * width;
    let rank = comm.rank();
    let rows_of = |ranks: std::ops::Range<usize>| -> Result<Tensor> {
        let part = &all[ranks.start * block..ranks.end * block];
        Tensor::from_slice(part, (ranks.len() * rows, width), local.device())
    };
    let mut parts = Vec::with_capacity(3);
    if rank > 0 {
        parts.push(rows_of(0..rank)?);
    }
    parts.push(local.clone());
    if rank + 1 < comm.size() {
        parts.push(rows_of(rank + 1..comm.size())?);
    }
    Tensor::cat(&parts, 0)
}

/// Sums the gradient of each of `params` over the ranks (the result holds theirs alone). A
/// parameter without a gradient on some rank counts zero there; one without a gradient on
/// every rank stays absent, as in one process. The parameters named in `after_gather` act only on the gathered whole batch
/// (the logit scale): every rank computes their whole gradient, so it is averaged instead.
pub fn all_reduce_grads(
    comm: &dyn Communicator,
    params: &[(String, Var)],
    grads: &GradStore,
    after_gather: &[&str],
) -> Result<GradStore> {
    if comm.size() == 1 {
        let mut own = GradStore::default();
        for (_, param) in params {
            if let Some(grad) = grads.get(param.as_tensor()) {
                own.insert(param.as_tensor(), grad.clone());
            }
        }
        return Ok(own);
    }
    let mut present: Vec<f32> = (params.iter())
        .map(|(_, p)| f32::from(u8::from(grads.get(p.as_tensor()).is_some())))
        .collect();
    comm.all_reduce_sum(&mut present);
    let mut summed = GradStore::default();
    let mut bucket = Bucket::default();
    for ((_, param), present) in params.iter().zip(present) {
        if present == 0.0 {
            continue;
        }
        match grads.get(param.as_tensor()) {
            Some(grad) => bucket.values.extend(grad.flatten_all()?.to_vec1::<f32>()?),
            None => (bucket.values).resize(bucket.values.len() + param.elem_count(), 0.0),
        }
        bucket.params.push(param);
        if bucket.values.len() >= BUCKET_VALUES {
            bucket.reduce_into(comm, &mut summed)?;
        }
    }
    bucket.reduce_into(comm, &mut summed)?;
    for (_, param) in params
        .iter()
        .filter(|(name, _)| after_gather.contains(&name.as_str()))
    {
        if let Some(sum) = summed.remove(param.as_tensor()) {
            summed.insert(
                param.as_tensor(),
                sum.affine(1.0 / comm.size() as f64, 0.0)?,
            );
        }
    }
    Ok(summed)
}

/// Gradients packed end to end, and the parameters they belong to.
#[derive(Default)]
struct Bucket<'a> {
    values: Vec<f32>,
    params: Vec<&'a Var>,
}

impl Bucket<'_> {
    /// Sums the bucket over the ranks, stores each parameter's share and empties it.
    fn reduce_into(&mut self, comm: &dyn Communicator, summed: &mut GradStore) -> Result<()> {
        if self.params.is_empty() {
            return Ok(());
        }
        comm.all_reduce_sum(&mut self.values);
        let mut offset = 0;
        for param in self.params.drain(..) {
            let n = param.elem_count();
            let values = &self.values[offset..offset + n];
            let grad = Tensor::from_slice(values, param.shape(), param.device())?;
            summed.insert(param.as_tensor(), grad);
            offset += n;
        }
        self.values.clear();
        Ok(())
    }
}

/// On several ranks, routing is independent of the world size only when each rank's share is
/// a whole number of routing groups (groups never span ranks): an error when it is not, a
/// warning when the groups are each rank's share.
pub fn check_routing_groups(model: &ModelSpec, per_rank: usize) -> anyhow::Result<()> {
    if model.active_moe_blocks().is_empty() {
        return Ok(());
    }
    let per_example = model.tokens_per_example();
    match model.moe.examples_per_group(per_example) {
        Some(group) if !per_rank.is_multiple_of(group) => anyhow::bail!(
            "model.moe.group_size {} routes {group} examples of {per_example} tokens together, \
             which does not divide the {per_rank} pairs of each rank's micro-batch; set \
             model.moe.group_size to {per_example} times a divisor of {per_rank}",
            model.moe.group_size.unwrap_or_default()
        ),
        Some(_) => Ok(()),
        None => {
            tracing::warn!(
                "train: each rank routes its {per_rank} pairs as one group, so routing depends \
                 on the number of ranks; set model.moe.group_size (e.g. {}) for routing that \
                 does not",
                per_example * per_rank
            );
            Ok(())
        }
    }
}
