//! Linear layers, layer norm and the dense MLP.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};

use limoe_ops::{gelu, layer_norm};

/// A linear layer `y = x W^T + b` over the last dimension: parameters `weight` [out, in] and
/// `bias` [out]. The leading dimensions are flattened into one matmul (no broadcast weight,
/// whose gradient candle would reduce), computed by [`limoe_ops::linear`].
#[derive(Clone, Debug)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.apply(x, false)
    }
}

impl Linear {
    /// The weight [out, in] and bias [out], when the layer has a bias.
    pub(crate) fn params(&self) -> Option<(&Tensor, &Tensor)> {
        self.bias.as_ref().map(|bias| (&self.weight, bias))
    }

    /// `gelu(self.forward(x))`, fused into one op when the layer has a bias.
    pub fn forward_gelu(&self, x: &Tensor) -> Result<Tensor> {
        self.apply(x, true)
    }

    fn apply(&self, x: &Tensor, with_gelu: bool) -> Result<Tensor> {
        let dims = x.dims();
        // Every reshape is a node of candle's backward (a zeros tensor and an add): only
        // inputs that are not flat already pay for them.
        let flat = match dims {
            [_, _] => x.clone(),
            _ => {
                let inputs = dims.last().copied().unwrap_or(1);
                x.reshape((x.elem_count() / inputs.max(1), inputs))?
            }
        };
        let y = match (&self.bias, with_gelu) {
            (Some(bias), false) => limoe_ops::linear(&flat, &self.weight, bias)?,
            (Some(bias), true) => limoe_ops::linear_gelu(&flat, &self.weight, bias)?,
            (None, false) => flat.matmul(&self.weight.t()?)?,
            (None, true) => gelu(&flat.matmul(&self.weight.t()?)?)?,
        };
        if dims.len() == 2 {
            return Ok(y);
        }
        let mut shape = dims.to_vec();
        if let Some(last) = shape.last_mut() {
            *last = self.weight.dim(0)?;
        }
        y.reshape(shape)
    }
}

/// A [`Linear`] layer with a bias, weights and bias starting at zero.
pub fn zero_linear(vb: &VarBuilder, inputs: usize, outputs: usize) -> Result<Linear> {
    Ok(Linear {
        weight: vb.get_with_hints((outputs, inputs), "weight", Init::Const(0.0))?,
        bias: Some(vb.get_with_hints(outputs, "bias", Init::Const(0.0))?),
    })
}

/// A [`Linear`] layer, Xavier-uniform initialised.
pub fn linear(vb: &VarBuilder, inputs: usize, outputs: usize, bias: bool) -> Result<Linear> {
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
    Ok(Linear { weight, bias })
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

impl LayerNorm {
    /// The scale and shift.
    pub(crate) fn params(&self) -> (&Tensor, &Tensor) {
        (&self.scale, &self.shift)
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        layer_norm(x, &self.scale, &self.shift)
    }
}

/// The transformer MLP: linear, GELU, linear.
#[derive(Clone)]
pub struct Mlp {
    fc1: Linear,
    fc2: Linear,
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
        self.fc2.forward(&self.fc1.forward_gelu(x)?)
    }
}

impl Mlp {
    /// The residual half block `x + mlp(norm(x))` for flat `x` [rows, width]: one fused op on
    /// f32 CPU tensors ([`limoe_ops::mlp_half`]).
    pub fn residual(&self, norm: &LayerNorm, x: &Tensor) -> Result<Tensor> {
        if let (true, Some(first), Some(second)) = (
            limoe_ops::runs_fused(x),
            self.fc1.params(),
            self.fc2.params(),
        ) {
            let params = limoe_ops::HalfBlock {
                norm: norm.params(),
                first,
                second,
            };
            return limoe_ops::mlp_half(x, &params);
        }
        x + self.forward(&norm.forward(x)?)?
    }
}
