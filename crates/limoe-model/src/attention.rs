//! Multi-head self-attention (one QKV projection) with an optional key-padding bias, and the
//! attention pooling head that reuses it with a learned query.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::layers::{LayerNorm, Linear, linear};
use limoe_ops::{HalfBlock, attention_half, softmax};

/// Multi-head dot-product attention.
#[derive(Clone)]
pub struct Attention {
    qkv: Linear,
    out: Linear,
    heads: usize,
}

impl Attention {
    /// Attention over `width` features split into `heads` heads.
    pub fn new(vb: &VarBuilder, width: usize, heads: usize) -> Result<Attention> {
        if heads == 0 || !width.is_multiple_of(heads) {
            candle_core::bail!("{heads} attention heads do not divide width {width}");
        }
        Ok(Attention {
            qkv: linear(&vb.pp("qkv"), width, 3 * width, true)?,
            out: linear(&vb.pp("out"), width, width, true)?,
            heads,
        })
    }

    /// The residual half block `x + attention(norm(x))` for flat `x` [B * N, W]: one fused op
    /// on the CPU ([`attention_half`]); `tokens` and `key_bias` as in [`Attention::forward`].
    pub fn residual(
        &self,
        norm: &LayerNorm,
        x: &Tensor,
        tokens: usize,
        key_bias: Option<&Tensor>,
    ) -> Result<Tensor> {
        if let (true, Some(first), Some(second)) = (
            limoe_ops::runs_fused(x),
            self.qkv.params(),
            self.out.params(),
        ) {
            let params = HalfBlock {
                norm: norm.params(),
                first,
                second,
            };
            let bias = cpu_key_bias(x, tokens, key_bias)?;
            return attention_half(x, &params, &bias, tokens, self.heads);
        }
        x + self.forward(&norm.forward(x)?, tokens, key_bias)?
    }

    /// Self-attention within each sequence of `x` [B * N, W] (B sequences of `tokens` rows,
    /// flat). `key_bias` [B, 1, 1, N] is added to the scores (0 for real tokens, a large
    /// negative number for padding). Composed of candle ops (the path off the CPU; on the CPU
    /// [`Attention::residual`] runs the whole half block as one fused op).
    pub fn forward(&self, x: &Tensor, tokens: usize, key_bias: Option<&Tensor>) -> Result<Tensor> {
        let (rows, width) = x.dims2()?;
        if tokens == 0 || !rows.is_multiple_of(tokens) {
            candle_core::bail!("attention: {rows} rows are not sequences of {tokens} tokens");
        }
        let batch = rows / tokens;
        let head_dim = width / self.heads;
        let qkv = self
            .qkv
            .forward(x)?
            .reshape((batch, tokens, 3, self.heads, head_dim))?
            .permute((2, 0, 3, 1, 4))?;
        let q = (qkv.get(0)?.contiguous()? * (head_dim as f64).powf(-0.5))?;
        let k = qkv.get(1)?.contiguous()?;
        let v = qkv.get(2)?.contiguous()?;
        let mixed = attend(&q, &k, &v, key_bias)?;
        let merged = mixed.transpose(1, 2)?.reshape((rows, width))?;
        self.out.forward(&merged)
    }
}

/// The key bias of the fused CPU attention, [B, N]: `key_bias` reshaped, or zeros.
fn cpu_key_bias(x: &Tensor, tokens: usize, key_bias: Option<&Tensor>) -> Result<Tensor> {
    let batch = x.dim(0)? / tokens.max(1);
    match key_bias {
        Some(bias) => bias.reshape((batch, tokens)),
        None => Tensor::zeros((batch, tokens), x.dtype(), x.device()),
    }
}

/// softmax(q k^T + bias) v for q [B, H, Nq, d], k and v [B, H, Nk, d].
fn attend(q: &Tensor, k: &Tensor, v: &Tensor, key_bias: Option<&Tensor>) -> Result<Tensor> {
    let scores = q.matmul(&k.t()?)?;
    let scores = match key_bias {
        Some(bias) => scores.broadcast_add(&bias.to_dtype(scores.dtype())?)?,
        None => scores,
    };
    softmax(&scores)?.matmul(v)
}

/// Multi-head attention pooling (MAP): a learned query attends to the tokens.
#[derive(Clone)]
pub struct AttentionPool {
    query: Tensor,
    q: Linear,
    kv: Linear,
    out: Linear,
    heads: usize,
}

impl AttentionPool {
    /// A pooling head over `width` features with `heads` heads.
    pub fn new(vb: &VarBuilder, width: usize, heads: usize) -> Result<AttentionPool> {
        if heads == 0 || !width.is_multiple_of(heads) {
            candle_core::bail!("{heads} attention heads do not divide width {width}");
        }
        Ok(AttentionPool {
            query: vb.get_with_hints(
                (1, 1, width),
                "query",
                candle_nn::Init::Randn {
                    mean: 0.0,
                    stdev: 0.02,
                },
            )?,
            q: linear(&vb.pp("q"), width, width, true)?,
            kv: linear(&vb.pp("kv"), width, 2 * width, true)?,
            out: linear(&vb.pp("out"), width, width, true)?,
            heads,
        })
    }

    /// Pools `x` [B, N, W] to [B, W]; `key_bias` as in [`Attention::forward`].
    pub fn forward(&self, x: &Tensor, key_bias: Option<&Tensor>) -> Result<Tensor> {
        let (batch, tokens, width) = x.dims3()?;
        let head_dim = width / self.heads;
        let q = self
            .q
            .forward(&self.query.broadcast_as((batch, 1, width))?)?
            .reshape((batch, 1, self.heads, head_dim))?
            .transpose(1, 2)?;
        let q = (q * (head_dim as f64).powf(-0.5))?;
        let kv = self
            .kv
            .forward(x)?
            .reshape((batch, tokens, 2, self.heads, head_dim))?
            .permute((2, 0, 3, 1, 4))?;
        let k = kv.get(0)?.contiguous()?;
        let v = kv.get(1)?.contiguous()?;
        let pooled = attend(&q.contiguous()?, &k, &v, key_bias)?;
        self.out.forward(&pooled.reshape((batch, width))?)
    }
}
