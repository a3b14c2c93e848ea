//! Expert parallelism: each of the P ranks of an expert group holds E/P experts of every MoE
//! block, and the dispatch buffers travel to the experts' ranks and back by all-to-all.
//!
//! A rank routes its own tokens to all E experts, as one process would, into its
//! expert-major buffer [E, S, width] (S slots per expert: its groups times their capacity).
//! The ranks' S differ (capacity follows each group's real text length; evaluation without a
//! capacity is dropless), so every buffer is padded to the group's largest S with zero rows,
//! which no token reads back. Rank r sends the rows of experts [q E/P, (q+1) E/P) to rank q
//! and receives, from every rank, the rows for its own experts: [P, E/P, S, width], run as
//! E/P experts over P * S slots. The outputs go back the same way.
//!
//! The all-to-all of equal chunks is its own inverse, and a permutation's adjoint is its
//! inverse, so its backward pass is the same all-to-all of the gradient. Every rank calls it
//! in the same order: forward passes run the same layers, and backward passes visit the
//! exchanges in the reverse of that order, each MoE block's input depending on the last
//! block's output.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Result, Shape, Tensor, bail};
use limoe_dist::Communicator;

use super::experts::{Experts, is_expert_param};

/// The ranks that share one copy of the experts, and this rank's place among them.
#[derive(Clone)]
pub struct ExpertGroup {
    comm: Arc<dyn Communicator>,
}

impl fmt::Debug for ExpertGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ExpertGroup({} of {})", self.part(), self.parts())
    }
}

impl ExpertGroup {
    /// The group whose ranks `comm` spans; this rank holds its `comm.rank()`-th share.
    pub fn new(comm: Arc<dyn Communicator>) -> ExpertGroup {
        ExpertGroup { comm }
    }

    /// Ranks in the group (P).
    pub fn parts(&self) -> usize {
        self.comm.size()
    }

    /// This rank's share, `0..parts()`.
    pub fn part(&self) -> usize {
        self.comm.rank()
    }

    /// The global indices of the experts this rank holds, of `experts` in all.
    pub fn local(&self, experts: usize) -> Range<usize> {
        let per_rank = experts / self.parts();
        self.part() * per_rank..(self.part() + 1) * per_rank
    }

    /// The communicator over the group's ranks, in share order.
    pub fn comm(&self) -> &dyn Communicator {
        self.comm.as_ref()
    }

    /// The whole tensor of the parameter (or optimiser moment) `name` whose share this rank
    /// holds, from every rank's `share` (a collective over the group); other tensors are
    /// their own whole. What checkpoints store, so that they load at any placement.
    pub fn whole(&self, name: &str, share: &Tensor) -> Result<Tensor> {
        if !is_expert_param(name) || self.parts() == 1 {
            return Ok(share.clone());
        }
        let values: Vec<f32> = share.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        let mut dims = share.dims().to_vec();
        dims[0] *= self.parts();
        Tensor::from_vec(self.comm.all_gather(&values), dims, &Device::Cpu)
    }

    /// The dims of the whole tensor of `name`, of which this rank holds `share_dims`.
    pub fn whole_dims(&self, name: &str, share_dims: &[usize]) -> Vec<usize> {
        let mut dims = share_dims.to_vec();
        if is_expert_param(name)
            && let Some(rows) = dims.first_mut()
        {
            *rows *= self.parts();
        }
        dims
    }

    /// This rank's share of the whole tensor `whole` of `name` (the inverse of
    /// [`ExpertGroup::whole`], without communication).
    pub fn share(&self, name: &str, whole: &Tensor) -> Result<Tensor> {
        if !is_expert_param(name) || self.parts() == 1 {
            return Ok(whole.clone());
        }
        let rows = whole.dim(0)? / self.parts();
        whole.narrow(0, self.part() * rows, rows)
    }

    /// Runs `experts` (this rank's E/P) on every rank's `buffer` [E * slots, width] of the
    /// group, each rank's own rows coming back as [E * slots, width].
    pub(crate) fn run(&self, experts: &Experts, buffer: &Tensor, count: usize) -> Result<Tensor> {
        let (rows, width) = buffer.dims2()?;
        let (parts, local) = (self.parts(), count / self.parts());
        if !count.is_multiple_of(parts) || !rows.is_multiple_of(count) {
            bail!("expert group: {rows} buffer rows for {count} experts over {parts} ranks");
        }
        let slots = rows / count;
        let widest = self.widest(slots)?;
        let sent = exchange(
            &self.comm,
            &buffer
                .reshape((count, slots, width))?
                .pad_with_zeros(1, 0, widest - slots)?,
        )?;
        // [P source ranks, E/P, S, width] -> this rank's experts, each over P * S slots.
        let mine = sent
            .reshape((parts, local, widest, width))?
            .transpose(0, 1)?
            .contiguous()?
            .reshape((local * parts * widest, width))?;
        let out = experts.forward(&mine, None)?;
        let back = out
            .reshape((local, parts, widest, width))?
            .transpose(0, 1)?;
        exchange(&self.comm, &back)?
            .reshape((count, widest, width))?
            .narrow(1, 0, slots)?
            .reshape((rows, width))
    }

    /// The largest `slots` of any rank of the group.
    fn widest(&self, slots: usize) -> Result<usize> {
        let all = self.comm.all_gather(&[slots as f32]);
        Ok(all.into_iter().fold(slots as f32, f32::max) as usize)
    }
}

/// The all-to-all of `x` over `comm`'s ranks, differentiable: its first dimension splits into
/// one equal chunk per rank, in rank order, and chunk q goes to rank q, which puts what it
/// receives from rank r in chunk r. A collective: every rank calls it, with `x` of one shape.
pub fn exchange(comm: &Arc<dyn Communicator>, x: &Tensor) -> Result<Tensor> {
    // The communicator moves f32: a bf16 buffer travels widened (the cast is differentiable).
    x.to_dtype(DType::F32)?
        .contiguous()?
        .apply_op1(AllToAll {
            comm: Arc::clone(comm),
        })?
        .to_dtype(x.dtype())
}

/// The all-to-all of equal chunks (one per rank, in rank order) as a differentiable op.
struct AllToAll {
    comm: Arc<dyn Communicator>,
}

impl CustomOp1 for AllToAll {
    fn name(&self) -> &'static str {
        "expert-all-to-all"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (CpuStorage::F32(data), Some((start, end))) = (storage, layout.contiguous_offsets())
        else {
            bail!("{}: needs a contiguous f32 tensor", self.name());
        };
        if !(end - start).is_multiple_of(self.comm.size()) {
            bail!(
                "{}: {} values do not split into {} equal chunks",
                self.name(),
                end - start,
                self.comm.size()
            );
        }
        let received = self.comm.all_to_all(&data[start..end]);
        Ok((CpuStorage::F32(received), layout.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        grad.contiguous()?.apply_op1_no_bwd(self).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rank's place in a group, for the layout rules that need no collective (the
    /// collectives are tested on a real job in tests/expert_parallel.rs).
    struct Place {
        rank: usize,
        size: usize,
    }

    impl Communicator for Place {
        fn rank(&self) -> usize {
            self.rank
        }
        fn size(&self) -> usize {
            self.size
        }
        fn all_reduce_sum(&self, _: &mut [f32]) {
            unreachable!("no collective in these tests")
        }
        fn all_reduce_sum_f64(&self, _: &mut [f64]) {
            unreachable!("no collective in these tests")
        }
        fn all_gather(&self, _: &[f32]) -> Vec<f32> {
            unreachable!("no collective in these tests")
        }
        fn all_gather_bytes(&self, _: &[u8]) -> Vec<u8> {
            unreachable!("no collective in these tests")
        }
        fn all_to_all(&self, _: &[f32]) -> Vec<f32> {
            unreachable!("no collective in these tests")
        }
        fn broadcast_bytes(&self, _: &mut Vec<u8>, _: usize) {
            unreachable!("no collective in these tests")
        }
        fn barrier(&self) {
            unreachable!("no collective in these tests")
        }
        fn split(&self, _: u32) -> Box<dyn Communicator> {
            unreachable!("no collective in these tests")
        }
        fn abort(&self, code: i32) -> ! {
            std::process::exit(code)
        }
    }

    #[test]
    fn a_rank_holds_its_rows_of_every_expert_tensor_and_the_rest_whole() {
        let group = ExpertGroup::new(Arc::new(Place { rank: 1, size: 2 }));
        assert_eq!(group.local(8), 4..8);
        let expert = "encoder.block1.moe.experts.w1";
        let moment = "m.encoder.block1.moe.experts.b2";
        let router = "encoder.block1.moe.router";
        assert_eq!(group.whole_dims(expert, &[2, 3, 5]), [4, 3, 5]);
        assert_eq!(group.whole_dims(moment, &[2, 5]), [4, 5]);
        assert_eq!(group.whole_dims(router, &[3, 4]), [3, 4]);
        let whole = Tensor::arange(0f32, 8.0, &Device::Cpu)
            .and_then(|t| t.reshape((4, 2)))
            .unwrap();
        let share = group.share(expert, &whole).unwrap();
        assert_eq!(share.to_vec2::<f32>().unwrap(), [[4.0, 5.0], [6.0, 7.0]]);
        assert_eq!(group.share(router, &whole).unwrap().dims(), [4, 2]);
    }
}
