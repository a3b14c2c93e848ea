//! The step's guard: a non-finite loss or gradient stops training with a [`NonFinite`] error;
//! otherwise the global gradient norm and the clip factor for [`crate::optim::AdamW::step`].

use std::fmt;

use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};
use limoe_model::moe::ExpertGroup;
use limoe_model::moe::experts::is_expert_param;
use limoe_ops::optim::SumSquares;

/// What was not finite.
#[derive(Clone, Debug, PartialEq)]
pub enum NonFiniteSource {
    /// The loss.
    Loss(f64),
    /// The gradient of this parameter (the first one in parameter order).
    Gradient(String),
}

/// A NaN or infinity in the loss or a gradient at `step`: the loop stops, keeps its last good
/// checkpoint and records the event. Reaches the loop inside an [`anyhow::Error`]; find it with
/// `err.downcast_ref::<NonFinite>()`.
#[derive(Clone, Debug, PartialEq)]
pub struct NonFinite {
    /// The step whose loss or gradient it was.
    pub step: u64,
    /// The loss, or the first parameter whose gradient is not finite.
    pub source: NonFiniteSource,
}

impl fmt::Display for NonFinite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            NonFiniteSource::Loss(loss) => write!(f, "step {}: the loss is {loss}", self.step),
            NonFiniteSource::Gradient(name) => write!(
                f,
                "step {}: the gradient of `{name}` has a NaN or infinite value",
                self.step
            ),
        }
    }
}

impl std::error::Error for NonFinite {}

/// The gradients' global norm and what to multiply them by.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GradNorm {
    /// The L2 norm over all gradients together, before clipping.
    pub norm: f64,
    /// `max_norm / norm` when clipping is on and the norm exceeds it, else 1; pass it to
    /// [`crate::optim::AdamW::step`] as `grad_scale` (the gradients themselves are not touched).
    pub scale: f64,
}

/// Checks `loss` and every gradient of `params` for NaN/inf (a [`NonFinite`] error naming
/// `step` and the first offending parameter), and returns the global norm with the factor that
/// clips it to `max_norm`. Parameters without a gradient are skipped. Under expert
/// parallelism the expert shares of the `group`'s ranks count together (a collective over
/// it, made before any error so that every rank of the group stops alike).
///
/// One sum of squares per gradient (a single f64-accumulated pass on the CPU), one transfer
/// to the host for all of them.
pub fn check_and_clip(
    step: u64,
    loss: f64,
    params: &[(String, Var)],
    grads: &GradStore,
    max_norm: Option<f64>,
    group: Option<&ExpertGroup>,
) -> anyhow::Result<GradNorm> {
    if !loss.is_finite() {
        return Err(NonFinite {
            step,
            source: NonFiniteSource::Loss(loss),
        }
        .into());
    }
    let mut names = Vec::with_capacity(params.len());
    let mut sums = Vec::with_capacity(params.len());
    for (name, param) in params {
        if let Some(grad) = grads.get(param.as_tensor()) {
            names.push(name);
            sums.push(sum_squares(grad)?);
        }
    }
    let sums = if sums.is_empty() {
        Vec::new()
    } else {
        Tensor::stack(&sums, 0)?.to_vec1::<f64>()?
    };
    let (shared, own): (Vec<_>, Vec<_>) =
        (names.iter().zip(&sums)).partition(|(name, _)| group.is_some() && is_expert_param(name));
    let mut shared = [shared.iter().map(|(_, sum)| **sum).sum::<f64>()];
    if let Some(group) = group {
        group.comm().all_reduce_sum_f64(&mut shared);
    }
    if let Some(i) = sums.iter().position(|s| !s.is_finite()) {
        return Err(NonFinite {
            step,
            source: NonFiniteSource::Gradient(names[i].clone()),
        }
        .into());
    }
    if !shared[0].is_finite() {
        return Err(NonFinite {
            step,
            source: NonFiniteSource::Gradient(
                "an expert share on another rank of the expert group".to_owned(),
            ),
        }
        .into());
    }
    let norm = (own.iter().map(|(_, sum)| **sum).sum::<f64>() + shared[0]).sqrt();
    let scale = match max_norm {
        Some(max) if norm > max => max / norm,
        _ => 1.0,
    };
    Ok(GradNorm { norm, scale })
}

/// The sum of squares of a gradient as an f64 scalar on its device.
fn sum_squares(grad: &Tensor) -> candle_core::Result<Tensor> {
    let grad = grad.to_dtype(DType::F32)?;
    if grad.device().is_cpu() {
        grad.contiguous()?.apply_op1_no_bwd(&SumSquares)
    } else {
        sum_squares_generic(&grad)
    }
}

/// [`sum_squares`] as candle expressions (devices without the fused loop).
fn sum_squares_generic(grad: &Tensor) -> candle_core::Result<Tensor> {
    grad.sqr()?.sum_all()?.to_dtype(DType::F64)
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    #[test]
    fn fused_and_generic_sums_of_squares_agree() {
        let values: Vec<f32> = (0..300).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
        let t = Tensor::from_vec(values, (10, 30), &Device::Cpu).unwrap();
        let fused: f64 = sum_squares(&t.t().unwrap()).unwrap().to_scalar().unwrap();
        let generic: f64 = sum_squares_generic(&t).unwrap().to_scalar().unwrap();
        assert!(
            (fused - generic).abs() <= 1e-5 * fused,
            "{fused} vs {generic}"
        );
        // The f64 accumulation keeps a finite f32 gradient's sum finite.
        let big = Tensor::from_vec(vec![3e38f32, 3e38], 2, &Device::Cpu).unwrap();
        let sum: f64 = sum_squares(&big).unwrap().to_scalar().unwrap();
        assert!(sum.is_finite());
    }
}
