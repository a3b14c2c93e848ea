//! Values a fused op keeps from its forward pass for its backward pass.

use std::sync::OnceLock;

use candle_core::{Device, Result, Storage, Tensor, WithDType};

use crate::storage::contiguous;

/// A tensor an op computes in its forward pass and reads in its backward pass, kept only
/// when the op's inputs track gradients (an op applied without them has no backward).
pub(crate) struct Saved {
    wanted: bool,
    value: OnceLock<Tensor>,
}

impl Saved {
    /// Keeps what it is given when `wanted` (pass whether any input tracks a gradient).
    pub fn new(wanted: bool) -> Saved {
        Saved {
            wanted,
            value: OnceLock::new(),
        }
    }

    /// Whether [`Saved::keep`] keeps anything.
    pub fn wanted(&self) -> bool {
        self.wanted
    }

    /// Keeps `values` (of `shape`) as a CPU tensor when wanted; the first value kept stays.
    pub fn keep<T: WithDType>(&self, values: Vec<T>, shape: &[usize]) -> Result<()> {
        if self.wanted && self.value.get().is_none() {
            let tensor = Tensor::from_vec(values, shape, &Device::Cpu)?;
            // A second forward pass of the same op value would compute the same tensor.
            let _ = self.value.set(tensor);
        }
        Ok(())
    }

    /// The kept tensor, or an error naming `op` when the forward pass kept none.
    pub fn get(&self, op: &str) -> Result<Tensor> {
        match self.value.get() {
            Some(tensor) => Ok(tensor.clone()),
            None => candle_core::bail!("{op}: the forward pass kept no values for the backward"),
        }
    }
}

/// Runs `f` on the contiguous values of CPU tensors of type `T` (read in place, not copied);
/// any other tensor is an error naming `op`.
pub(crate) fn with_values<T: WithDType, R>(
    tensors: &[Tensor],
    op: &str,
    f: impl FnOnce(&[&[T]]) -> Result<R>,
) -> Result<R> {
    let guards: Vec<_> = tensors.iter().map(|t| t.storage_and_layout()).collect();
    let values = guards
        .iter()
        .map(|(storage, layout)| -> Result<&[T]> {
            let Storage::Cpu(cpu) = &**storage else {
                candle_core::bail!("{op}: kept values are not on the CPU");
            };
            contiguous(cpu.as_slice::<T>()?, layout, op)
        })
        .collect::<Result<Vec<_>>>()?;
    f(&values)
}
