//! Per-modality heads: final norm, pooling and projection into the joint space.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::attention::AttentionPool;
use crate::inputs::TextMask;
use crate::layers::{LayerNorm, Linear, linear};
use limoe_core::spec::Pooling;
use limoe_ops::l2_normalize;

enum Pool {
    Mean,
    Map(AttentionPool),
}

/// Norm, pooling and a linear projection (no bias) to the joint embedding, L2-normalised.
pub struct Head {
    norm: LayerNorm,
    pool: Pool,
    projection: Linear,
}

impl Head {
    /// A head from `width` tokens to `embed_dim` embeddings.
    pub fn new(
        vb: &VarBuilder,
        pooling: Pooling,
        width: usize,
        heads: usize,
        embed_dim: usize,
    ) -> Result<Head> {
        let pool = match pooling {
            Pooling::Mean => Pool::Mean,
            Pooling::Map => Pool::Map(AttentionPool::new(&vb.pp("map"), width, heads)?),
        };
        Ok(Head {
            norm: LayerNorm::new(&vb.pp("norm"), width)?,
            pool,
            projection: linear(&vb.pp("projection"), width, embed_dim, false)?,
        })
    }

    /// Embeds tokens [B, N, W] (with the text mask, if any) to unit vectors [B, E].
    pub fn forward(&self, tokens: &Tensor, mask: Option<&TextMask>) -> Result<Tensor> {
        Ok(self.embed(tokens, mask)?.1)
    }

    /// The pooled features before the projection (vmoe's pre-logits, [B, W]) and the unit
    /// embedding [B, E] projected from them.
    pub fn embed(&self, tokens: &Tensor, mask: Option<&TextMask>) -> Result<(Tensor, Tensor)> {
        let normed = self.norm.forward(tokens)?;
        let pooled = match (&self.pool, mask) {
            (Pool::Mean, None) => normed.mean(1)?,
            (Pool::Mean, Some(mask)) => normed
                .broadcast_mul(&mask.weights)?
                .sum(1)?
                .broadcast_div(&mask.weights.sum(1)?)?,
            (Pool::Map(pool), mask) => pool.forward(&normed, mask.map(|m| &m.key_bias))?,
        };
        let embedding = l2_normalize(&self.projection.forward(&pooled)?)?;
        Ok((pooled, embedding))
    }
}
