//! Per-modality heads: final norm, pooling and projection into the joint space, and the
//! classification head of the image classifiers.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::attention::AttentionPool;
use crate::inputs::TextMask;
use crate::layers::{LayerNorm, Linear, linear, zero_linear};
use limoe_core::spec::Pooling;
use limoe_ops::l2_normalize;

enum Pool {
    Mean,
    Map(AttentionPool),
}

/// The final norm and the pooling of a modality's tokens into one vector (vmoe's
/// pre-logits): what a contrastive head projects and a classifier's head reads.
pub struct Pooler {
    norm: LayerNorm,
    pool: Pool,
}

impl Pooler {
    /// Norm and pooling of `width` tokens, parameters under `vb` (`norm`, `map`).
    pub fn new(vb: &VarBuilder, pooling: Pooling, width: usize, heads: usize) -> Result<Pooler> {
        let pool = match pooling {
            Pooling::Mean => Pool::Mean,
            Pooling::Map => Pool::Map(AttentionPool::new(&vb.pp("map"), width, heads)?),
        };
        Ok(Pooler {
            norm: LayerNorm::new(&vb.pp("norm"), width)?,
            pool,
        })
    }

    /// Pools tokens [B, N, W] (with the text mask, if any) to features [B, W].
    pub fn forward(&self, tokens: &Tensor, mask: Option<&TextMask>) -> Result<Tensor> {
        let normed = self.norm.forward(tokens)?;
        match (&self.pool, mask) {
            (Pool::Mean, None) => normed.mean(1),
            (Pool::Mean, Some(mask)) => normed
                .broadcast_mul(&mask.weights.to_dtype(normed.dtype())?)?
                .sum(1)?
                .broadcast_div(&mask.weights.sum(1)?.to_dtype(normed.dtype())?),
            (Pool::Map(pool), mask) => pool.forward(&normed, mask.map(|m| &m.key_bias)),
        }
    }
}

/// Norm, pooling and a linear projection (no bias) to the joint embedding, L2-normalised.
pub struct Head {
    pooler: Pooler,
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
        Ok(Head {
            pooler: Pooler::new(vb, pooling, width, heads)?,
            projection: linear(&vb.pp("projection"), width, embed_dim, false)?,
        })
    }

    /// Embeds tokens [B, N, W] (with the text mask, if any) to unit vectors [B, E].
    pub fn forward(&self, tokens: &Tensor, mask: Option<&TextMask>) -> Result<Tensor> {
        Ok(self.embed(tokens, mask)?.1)
    }

    /// The pooled features before the projection (vmoe's pre-logits, [B, W]) and the unit
    /// embedding [B, E] projected from them, both f32 whatever the model computes in: the
    /// losses and evaluations take f32.
    pub fn embed(&self, tokens: &Tensor, mask: Option<&TextMask>) -> Result<(Tensor, Tensor)> {
        let pooled = self.pooler.forward(tokens, mask)?;
        let projected = self.projection.forward(&pooled)?.to_dtype(DType::F32)?;
        Ok((pooled.to_dtype(DType::F32)?, l2_normalize(&projected)?))
    }
}

/// The classification head: the image [`Pooler`] (named as a contrastive model's image head,
/// so that its weights transfer) and a linear layer to the class logits, started at zero as
/// V-MoE's head is, so that a new head begins at the uniform prediction.
pub struct ClassifierHead {
    pooler: Pooler,
    logits: Linear,
}

impl ClassifierHead {
    /// The pooler under `pooler_vb`, the logits layer (`weight`, `bias`) under `logits_vb`.
    pub fn new(
        pooler_vb: &VarBuilder,
        logits_vb: &VarBuilder,
        pooling: Pooling,
        width: usize,
        heads: usize,
        classes: usize,
    ) -> Result<ClassifierHead> {
        Ok(ClassifierHead {
            pooler: Pooler::new(pooler_vb, pooling, width, heads)?,
            logits: zero_linear(logits_vb, width, classes)?,
        })
    }

    /// The pre-logits [B, W] of image tokens [B, N, W], and the class logits [B, classes]
    /// computed from them (`frozen`: from the pre-logits detached, so that no gradient
    /// reaches the network below the head); f32, as [`Head::embed`]'s.
    pub fn classify(&self, tokens: &Tensor, frozen: bool) -> Result<(Tensor, Tensor)> {
        let pooled = self.pooler.forward(tokens, None)?;
        let features = match frozen {
            true => pooled.detach(),
            false => pooled.clone(),
        };
        let logits = self.logits.forward(&features)?.to_dtype(DType::F32)?;
        Ok((pooled.to_dtype(DType::F32)?, logits))
    }
}
