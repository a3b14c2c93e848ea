//! Gradient accumulation over micro-batches: the mean of their gradients, per parameter.

use candle_core::backprop::GradStore;
use candle_core::{DType, Result, Var, bail};
use limoe_ops::optim::Axpy;

/// Sums the gradients of `micro_batches` micro-batches, each scaled by `1 / micro_batches`,
/// into one [`GradStore`] for [`super::AdamW::step`] and the clipping guard.
///
/// A parameter that has a gradient in only some micro-batches gets the sum of those (scaled
/// by `1 / micro_batches`); one with none stays absent, so the step leaves it unchanged.
pub struct GradAccumulator {
    micro_batches: usize,
    added: usize,
    sum: GradStore,
}

impl GradAccumulator {
    /// An empty accumulator for steps of `micro_batches` micro-batches (at least 1).
    pub fn new(micro_batches: usize) -> Result<GradAccumulator> {
        if micro_batches == 0 {
            bail!("gradient accumulation needs at least one micro-batch");
        }
        Ok(GradAccumulator {
            micro_batches,
            added: 0,
            sum: GradStore::default(),
        })
    }

    /// Micro-batches added since the last [`GradAccumulator::take`].
    pub fn added(&self) -> usize {
        self.added
    }

    /// Adds one micro-batch's gradients of `params`; errors once all micro-batches are in.
    pub fn add(&mut self, params: &[(String, Var)], grads: &GradStore) -> Result<()> {
        if self.added == self.micro_batches {
            bail!(
                "all {} micro-batches of this step are already added",
                self.micro_batches
            );
        }
        let a = 1.0 / self.micro_batches as f64;
        for (_, param) in params {
            let Some(grad) = grads.get(param.as_tensor()) else {
                continue;
            };
            let grad = grad.to_dtype(DType::F32)?;
            match self.sum.get(param.as_tensor()) {
                Some(sum) if sum.device().is_cpu() => {
                    sum.inplace_op2(&grad.contiguous()?, &Axpy { a: a as f32 })?;
                }
                Some(sum) => {
                    let next = (sum + (grad * a)?)?;
                    self.sum.insert(param.as_tensor(), next);
                }
                // A fresh tensor: gradients may share storage, so never scale them in place.
                None => {
                    self.sum.insert(param.as_tensor(), grad.affine(a, 0.0)?);
                }
            }
        }
        self.added += 1;
        Ok(())
    }

    /// The mean gradients once every micro-batch is added; the accumulator starts over.
    pub fn take(&mut self) -> Result<GradStore> {
        if self.added != self.micro_batches {
            bail!(
                "{} of {} micro-batches added",
                self.added,
                self.micro_batches
            );
        }
        self.added = 0;
        Ok(std::mem::take(&mut self.sum))
    }
}
