//! Linear layers, layer norm and the dense MLP.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};

use crate::ops::{gelu, normalize};

/// A linear layer `y = x W^T + b` over the last dimension, Xavier-uniform initialised.
pub fn linear(
    vb: &VarBuilder,
    inputs: usize,
    outputs: usize,
    bias: bool,
) -> Result<candle_nn::Linear> {
    let bound = (6.0 / (inputs + outputs) as f64).sqrt();
    let weight = vb.get_with_hints(
        (outputs, inputs),
        "weight",
        Init::Uniform {
            lo: -bound,
            up: bound,
        },
    )?;
    let bias = if bias {
        Some(vb.get_with_hints(outputs, "bias", Init::Const(0.0))?)
    } else {
        None
    };
    Ok(candle_nn::Linear::new(weight, bias))
}

/// Layer normalisation over the last dimension with a learned scale and shift.
#[derive(Clone)]
pub struct LayerNorm {
    scale: Tensor,
    shift: Tensor,
}

impl LayerNorm {
    /// A layer norm over `width` features (scale 1, shift 0).
    pub fn new(vb: &VarBuilder, width: usize) -> Result<LayerNorm> {
        Ok(LayerNorm {
            scale: vb.get_with_hints(width, "scale", Init::Const(1.0))?,
            shift: vb.get_with_hints(width, "shift", Init::Const(0.0))?,
        })
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        normalize(x)?
            .broadcast_mul(&self.scale)?
            .broadcast_add(&self.shift)
    }
}

/// The transformer MLP: linear, GELU, linear.
#[derive(Clone)]
pub struct Mlp {
    fc1: candle_nn::Linear,
    fc2: candle_nn::Linear,
}

impl Mlp {
    /// An MLP `width -> hidden -> width`.
    pub fn new(vb: &VarBuilder, width: usize, hidden: usize) -> Result<Mlp> {
        Ok(Mlp {
            fc1: linear(&vb.pp("fc1"), width, hidden, true)?,
            fc2: linear(&vb.pp("fc2"), hidden, width, true)?,
        })
    }
}

impl Module for Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.fc2.forward(&gelu(&self.fc1.forward(x)?)?)
    }
}
