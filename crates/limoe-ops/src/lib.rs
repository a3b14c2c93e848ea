//! CPU kernels on candle for training: differentiable ops with hand-written backward passes
//! (GELU, layer norm, softmax, bias addition, linear and grouped linear layers, self-attention,
//! the two residual halves of a pre-LN block), in-place optimiser updates ([`optim`]) and the
//! thread-pool entry to call them from ([`pool`]). Off the CPU, and for tensors other than
//! f32 and f64 (bf16 under mixed precision), the ops fall back to compositions of candle primitives
//! ([`runs_fused`]; self-attention and the half blocks run fused only). The crate knows no
//! model.
//!
//! Why: candle_nn's `LayerNorm`, `ops::softmax_last_dim` and `rms_norm` are forward-only
//! kernels, so used in training they leave their inputs without gradient; and candle's
//! backward starts every node's input gradient as a zeroed buffer and adds into it. Each op
//! here is one node, its loops compiled for AVX2 where the CPU has it: fewer, larger nodes are
//! most of the CPU speed-up (`limoe bench` measures it against PyTorch).

mod experts;
mod fused;
mod gather;
mod linear;
mod matmul;
pub mod optim;
pub mod pool;
mod real;
mod reduce;
mod rows;
mod saved;
mod self_attention;
mod storage;
mod sublayer;
mod wide;

use std::sync::Arc;

use candle_core::{D, DType, Result, Tensor};

pub use reduce::LAYER_NORM_EPS;

/// Whether the fused kernels take `x`: their loops run on the CPU, in f32 (and f64, for
/// gradient checks).
pub fn runs_fused(x: &Tensor) -> bool {
    x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64)
}

/// GELU (tanh approximation).
pub fn gelu(x: &Tensor) -> Result<Tensor> {
    if runs_fused(x) {
        x.contiguous()?.apply_op1(fused::Gelu)
    } else {
        x.gelu()
    }
}

/// (x - mean) / sqrt(var + eps) over the last dimension (a layer norm without scale/shift).
pub fn normalize(x: &Tensor) -> Result<Tensor> {
    if runs_fused(x) {
        return x.contiguous()?.apply_op1(fused::Normalize);
    }
    // The statistics in f32, whatever `x` is: bf16 means lose the small variances.
    let wide = x.to_dtype(DType::F32)?;
    let centred = wide.broadcast_sub(&wide.mean_keepdim(D::Minus1)?)?;
    let variance = centred.sqr()?.mean_keepdim(D::Minus1)?;
    centred
        .broadcast_div(&(variance + LAYER_NORM_EPS)?.sqrt()?)?
        .to_dtype(x.dtype())
}

/// `x W^T + b` for `x` [R, in], `weight` [out, in], `bias` [out]: one node of the backward
/// on the CPU, a transpose, a matmul and a bias add elsewhere.
pub fn linear(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    if runs_fused(x) {
        return apply_linear(x, weight, bias, false);
    }
    add_bias(&x.matmul(&weight.t()?)?, bias)
}

/// `gelu(linear(x, weight, bias))`, one node of the backward on the CPU (it keeps the
/// pre-activation for its backward).
pub fn linear_gelu(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    if runs_fused(x) {
        return apply_linear(x, weight, bias, true);
    }
    gelu(&linear(x, weight, bias)?)
}

/// The activation of a fused linear op on these inputs.
fn activation(gelu: bool, inputs: [&Tensor; 3]) -> linear::Activation {
    if gelu {
        let tracked = inputs.iter().any(|t| t.track_op());
        linear::Activation::Gelu(saved::Saved::new(tracked))
    } else {
        linear::Activation::Identity
    }
}

/// A fused CPU op on contiguous copies of its three inputs.
fn apply3(
    (a, b, c): (&Tensor, &Tensor, &Tensor),
    op: impl candle_core::CustomOp3 + Send + Sync + 'static,
) -> Result<Tensor> {
    a.contiguous()?
        .apply_op3(&b.contiguous()?, &c.contiguous()?, op)
}

fn apply_linear(x: &Tensor, weight: &Tensor, bias: &Tensor, gelu: bool) -> Result<Tensor> {
    let activation = activation(gelu, [x, weight, bias]);
    apply3((x, weight, bias), linear::Linear { activation })
}

fn apply_grouped_linear(
    x: &Tensor,
    (weight, bias): (&Tensor, &Tensor),
    filled: Option<&[usize]>,
    gelu: bool,
) -> Result<Tensor> {
    let op = linear::GroupedLinear {
        activation: activation(gelu, [x, weight, bias]),
        filled: filled.map(<[usize]>::to_vec),
    };
    apply3((x, weight, bias), op)
}

/// One linear layer per group of rows: `x` [G * S, in] holds G blocks of S rows; block g is
/// mapped by `weight` [G, in, out] and `bias` [G, out] of group g, giving [G * S, out]. One
/// node of the backward on the CPU, a batched matmul and a bias add elsewhere.
///
/// `filled` (CPU only): the rows of each block that hold data, from the block's first row.
/// The others are not computed (their values are unspecified) and their gradient must be
/// zero: for buffers of slots filled from the top whose empty slots are never read back.
pub fn grouped_linear(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    filled: Option<&[usize]>,
) -> Result<Tensor> {
    if runs_fused(x) {
        return apply_grouped_linear(x, (weight, bias), filled, false);
    }
    let (groups, inputs, outputs) = weight.dims3()?;
    let rows = x.dim(0)? / groups.max(1);
    add_bias(&x.reshape((groups, rows, inputs))?.matmul(weight)?, bias)?
        .reshape((groups * rows, outputs))
}

/// `gelu(grouped_linear(x, weight, bias, filled))`, one node of the backward on the CPU.
pub fn grouped_linear_gelu(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    filled: Option<&[usize]>,
) -> Result<Tensor> {
    if runs_fused(x) {
        return apply_grouped_linear(x, (weight, bias), filled, true);
    }
    gelu(&grouped_linear(x, weight, bias, filled)?)
}

/// The expert MLPs of a sparse layer on rows gathered from `tokens` [T, W]: row r of the
/// result is `fc2(gelu(fc1(tokens[index[r]])))` with the layers of expert `r / S`, for
/// `index` [E * S] (u32) and the experts' `w1` [E, W, H], `b1` [E, H], `w2` [E, H, W], `b2`
/// [E, W]; `filled` as in [`grouped_linear`]. Two nodes of the backward, the hidden
/// activation inside one; CPU f32/f64 only (elsewhere: `index_select`, then
/// [`grouped_linear_gelu`] and [`grouped_linear`]).
pub fn expert_mlp(
    tokens: &Tensor,
    index: &Tensor,
    (w1, b1): (&Tensor, &Tensor),
    (w2, b2): (&Tensor, &Tensor),
    filled: Option<&[usize]>,
) -> Result<Tensor> {
    if !runs_fused(tokens) {
        candle_core::bail!("expert_mlp: the fused op takes f32 or f64 CPU tensors only");
    }
    let biases = Tensor::cat(&[b1.flatten_all()?, b2.flatten_all()?], 0)?;
    let gather = experts::GatherPacked {
        index: index.to_device(&candle_core::Device::Cpu)?,
    };
    let packed = tokens.contiguous()?.apply_op2(&biases, gather)?;
    let tracked = packed.track_op() || w1.track_op() || w2.track_op();
    let op = experts::ExpertMlp {
        filled: filled.map(<[usize]>::to_vec),
        kept: std::array::from_fn(|_| saved::Saved::new(tracked)),
    };
    apply3((&packed, w1, w2), op)
}

/// Layer normalisation over the last dimension: `normalize(x) * scale + shift`, with
/// `scale` and `shift` [n].
pub fn layer_norm(x: &Tensor, scale: &Tensor, shift: &Tensor) -> Result<Tensor> {
    if runs_fused(x) {
        return apply3((x, scale, shift), fused::LayerNorm);
    }
    normalize(x)?.broadcast_mul(scale)?.broadcast_add(shift)
}

/// `x + bias` over the last dimension: `bias` [n] is added to every row of `x` [..., n];
/// `bias` [G, n] adds its row g to the rows of block g of `x` [G, R, n] (one bias per group).
/// The bias's gradient is one pass of row sums (candle's broadcast backward reduces
/// dimension by dimension).
pub fn add_bias(x: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let grouped = bias.rank() == 2;
    if grouped && (x.rank() != 3 || x.dim(0)? != bias.dim(0)?) {
        candle_core::bail!(
            "add_bias: a bias {:?} needs x [{}, rows, n], got {:?}",
            bias.dims(),
            bias.dim(0)?,
            x.dims()
        );
    }
    if runs_fused(x) {
        return x
            .contiguous()?
            .apply_op2(&bias.contiguous()?, fused::BiasAdd);
    }
    if grouped {
        x.broadcast_add(&bias.unsqueeze(1)?)
    } else {
        x.broadcast_add(bias)
    }
}

/// Multi-head self-attention on the CPU, straight from the QKV projection: `qkv` [B * N, 3W]
/// holds B sequences of `tokens` = N rows of q, k and v (each `heads` x d features,
/// head-major); `key_bias` [B, N] is added to the scores of every query (0 for real keys, a
/// large negative number for padding). Returns `softmax(q k^T / sqrt(d) + bias) v` with the
/// heads merged, [B * N, W]; differentiable in `qkv` (the bias gets no gradient).
pub fn self_attention(
    qkv: &Tensor,
    key_bias: &Tensor,
    tokens: usize,
    heads: usize,
) -> Result<Tensor> {
    if !runs_fused(qkv) {
        candle_core::bail!("self_attention: the fused op takes f32 or f64 CPU tensors only");
    }
    let attention = self_attention::SelfAttention {
        tokens,
        heads,
        weights: saved::Saved::new(qkv.track_op()),
    };
    qkv.contiguous()?
        .apply_op2(&key_bias.contiguous()?, attention)
}

/// `y[t] = sum_k weights[k, t] * rows[index[k, t]]` for `rows` [R, n], `index` [K, T] (u32)
/// and `weights` [K, T], giving [T, n]: a sparse layer's combine. One node of the backward
/// on the CPU (gradients to `rows` and `weights`), a gather, a product and a sum elsewhere.
pub fn gather_weighted_sum(rows: &Tensor, index: &Tensor, weights: &Tensor) -> Result<Tensor> {
    let (k, t) = index.dims2()?;
    if runs_fused(rows) {
        let op = gather::GatherWeightedSum {
            index: Arc::new(index.flatten_all()?.to_vec1::<u32>()?),
        };
        return rows.contiguous()?.apply_op2(&weights.contiguous()?, op);
    }
    let picked = rows
        .index_select(&index.flatten_all()?, 0)?
        .broadcast_mul(&weights.reshape((k * t, 1))?)?;
    match k {
        1 => Ok(picked),
        _ => picked.reshape((k, t, rows.dim(1)?))?.sum(0),
    }
}

/// `base` [N, n] with `rows[i]` of `rows` [M, n] added to its row `index[i]` (`index` [M],
/// u32): routed rows back into a residual stream. One node of the backward on the CPU.
pub fn scatter_add_rows(base: &Tensor, index: &Tensor, rows: &Tensor) -> Result<Tensor> {
    if runs_fused(base) {
        let op = gather::ScatterAddRows {
            index: index.clone(),
        };
        return base.contiguous()?.apply_op2(&rows.contiguous()?, op);
    }
    base + base.zeros_like()?.index_add(index, rows, 0)?
}

/// Softmax over the last dimension.
pub fn softmax(x: &Tensor) -> Result<Tensor> {
    if runs_fused(x) {
        x.contiguous()?.apply_op1(fused::Softmax)
    } else {
        // In f32: bf16 exponentials sum with too few bits.
        candle_nn::ops::softmax(&x.to_dtype(DType::F32)?, D::Minus1)?.to_dtype(x.dtype())
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

/// The parameters of a pre-LN residual half block: the layer norm's (scale, shift) and two
/// linear layers' (weight [out, in], bias [out]).
pub struct HalfBlock<'a> {
    /// The layer norm's scale and shift [width].
    pub norm: (&'a Tensor, &'a Tensor),
    /// The first linear layer (attention: qkv [3W, W]; MLP: fc1 [hidden, W]).
    pub first: (&'a Tensor, &'a Tensor),
    /// The second linear layer (attention: out [W, W]; MLP: fc2 [W, hidden]).
    pub second: (&'a Tensor, &'a Tensor),
}

/// `x + out(self_attention(qkv(layer_norm(x))))` for `x` [B * N, W] on the CPU as one node
/// of the backward (see [`self_attention`] for `key_bias` and `tokens`).
pub fn attention_half(
    x: &Tensor,
    params: &HalfBlock,
    key_bias: &Tensor,
    tokens: usize,
    heads: usize,
) -> Result<Tensor> {
    if !runs_fused(x) {
        candle_core::bail!("attention_half: the fused op takes f32 or f64 CPU tensors only");
    }
    let packed = sublayer::pack(params.norm, params.first, params.second)?;
    let tracked = x.track_op() || packed.track_op();
    let op = sublayer::AttentionHalf {
        tokens,
        heads,
        kept: std::array::from_fn(|_| saved::Saved::new(tracked)),
    };
    x.contiguous()?
        .apply_op3(&packed, &key_bias.contiguous()?, op)
}

/// `x + fc2(gelu(fc1(layer_norm(x))))` for `x` [rows, W] on the CPU as one node of the
/// backward.
pub fn mlp_half(x: &Tensor, params: &HalfBlock) -> Result<Tensor> {
    if !runs_fused(x) {
        candle_core::bail!("mlp_half: the fused op takes f32 or f64 CPU tensors only");
    }
    let packed = sublayer::pack(params.norm, params.first, params.second)?;
    let tracked = x.track_op() || packed.track_op();
    let op = sublayer::MlpHalf {
        hidden: params.first.0.dim(0)?,
        kept: std::array::from_fn(|_| saved::Saved::new(tracked)),
    };
    x.contiguous()?.apply_op2(&packed, op)
}
