//! Differentiable building blocks.
//!
//! candle_nn's `LayerNorm`, `ops::softmax_last_dim` and `rms_norm` are forward-only kernels:
//! used in training they leave their inputs without gradient. On the CPU, GELU, the layer
//! norm's normalisation and softmax are fused single-loop ops with hand-written backward
//! passes ([`fused`]); on other devices they fall back to compositions of candle primitives.

mod fused;
mod kernel;

use candle_core::{D, Result, Tensor};

pub use fused::LAYER_NORM_EPS;

/// GELU (tanh approximation).
pub fn gelu(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() {
        x.contiguous()?.apply_op1(fused::Gelu)
    } else {
        x.gelu()
    }
}

/// (x - mean) / sqrt(var + eps) over the last dimension (a layer norm without scale/shift).
pub fn normalize(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() {
        return x.contiguous()?.apply_op1(fused::Normalize);
    }
    let centred = x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?;
    let variance = centred.sqr()?.mean_keepdim(D::Minus1)?;
    centred.broadcast_div(&(variance + LAYER_NORM_EPS)?.sqrt()?)
}

/// Softmax over the last dimension.
pub fn softmax(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() {
        x.contiguous()?.apply_op1(fused::Softmax)
    } else {
        candle_nn::ops::softmax(x, D::Minus1)
    }
}

/// Log-softmax over the last dimension (differentiable).
pub fn log_softmax(x: &Tensor) -> Result<Tensor> {
    candle_nn::ops::log_softmax(x, D::Minus1)
}

/// Scales each row (last dimension) to unit L2 norm.
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let norm = (x.sqr()?.sum_keepdim(D::Minus1)? + 1e-12)?.sqrt()?;
    x.broadcast_div(&norm)
}
