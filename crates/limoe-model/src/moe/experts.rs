//! The E expert MLPs as batched weights: one matmul per layer over all experts.

use candle_core::{Result, Tensor};
use candle_nn::{Init, VarBuilder};

use limoe_ops::{expert_mlp, grouped_linear, grouped_linear_gelu, runs_fused};

/// The name scope of a MoE layer's expert tensors (`<layer>.experts.w1`, ...).
pub const SCOPE: &str = "experts";

/// Whether the parameter `name` is an expert tensor, batched over experts along its first
/// dimension: what expert parallelism shards and checkpoints store whole.
pub fn is_expert_param(name: &str) -> bool {
    name.split('.').any(|part| part == SCOPE)
}

/// E two-layer GELU MLPs `width -> mlp_dim -> width`, stored batched over experts.
#[derive(Debug, Clone)]
pub struct Experts {
    /// [E, width, mlp_dim]
    w1: Tensor,
    /// [E, mlp_dim]
    b1: Tensor,
    /// [E, mlp_dim, width]
    w2: Tensor,
    /// [E, width]
    b2: Tensor,
}

impl Experts {
    /// Creates (or fetches) `w1`, `b1`, `w2`, `b2` under `vb`: Xavier-uniform weights (per
    /// expert fan-in/fan-out), zero biases.
    pub fn new(vb: &VarBuilder, experts: usize, width: usize, mlp_dim: usize) -> Result<Experts> {
        let xavier = |fan_in: usize, fan_out: usize| {
            let bound = (6.0 / (fan_in + fan_out) as f64).sqrt();
            Init::Uniform {
                lo: -bound,
                up: bound,
            }
        };
        Ok(Experts {
            w1: vb.get_with_hints((experts, width, mlp_dim), "w1", xavier(width, mlp_dim))?,
            b1: vb.get_with_hints((experts, mlp_dim), "b1", Init::Const(0.0))?,
            w2: vb.get_with_hints((experts, mlp_dim, width), "w2", xavier(mlp_dim, width))?,
            b2: vb.get_with_hints((experts, width), "b2", Init::Const(0.0))?,
        })
    }

    /// Applies expert e to row block e: `buffer` [E * slots, width] -> [E * slots, width].
    /// With `filled`, only the first `filled[e]` rows of block e are computed (the others are
    /// empty slots that nothing reads; see [`grouped_linear`]).
    pub fn forward(&self, buffer: &Tensor, filled: Option<&[usize]>) -> Result<Tensor> {
        let hidden = grouped_linear_gelu(buffer, &self.w1, &self.b1, filled)?;
        grouped_linear(&hidden, &self.w2, &self.b2, filled)
    }

    /// [`Experts::forward`] on the buffer of `tokens` [T, width] rows listed by `index`
    /// [E * slots]: on the CPU as one op with its gather, so the hidden activation is no node
    /// of the backward ([`limoe_ops::expert_mlp`]).
    pub fn forward_gathered(
        &self,
        tokens: &Tensor,
        index: &Tensor,
        filled: Option<&[usize]>,
    ) -> Result<Tensor> {
        if runs_fused(tokens) {
            let (first, second) = ((&self.w1, &self.b1), (&self.w2, &self.b2));
            return expert_mlp(tokens, index, first, second, filled);
        }
        self.forward(&tokens.index_select(index, 0)?, filled)
    }
}
