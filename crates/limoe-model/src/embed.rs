//! Per-modality input embeddings with learned position embeddings.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};

use crate::layers::{Linear, linear};

const POSITION_INIT: Init = Init::Randn {
    mean: 0.0,
    stdev: 0.02,
};

/// Image patches [B, Np, P*P*C] -> tokens [B, Np, W]: a linear map plus positions.
pub struct PatchEmbed {
    projection: Linear,
    positions: Tensor,
}

impl PatchEmbed {
    /// Embeds `patches` patches of `patch_dim` values into `width`.
    pub fn new(vb: &VarBuilder, patches: usize, patch_dim: usize, width: usize) -> Result<Self> {
        Ok(PatchEmbed {
            projection: linear(&vb.pp("projection"), patch_dim, width, true)?,
            positions: vb.get_with_hints((1, patches, width), "positions", POSITION_INIT)?,
        })
    }
}

impl Module for PatchEmbed {
    fn forward(&self, patches: &Tensor) -> Result<Tensor> {
        // Pixels arrive as f32; the model may compute in another dtype.
        self.projection
            .forward(&patches.to_dtype(self.positions.dtype())?)?
            .broadcast_add(&self.positions)
    }
}

/// Token ids [B, L] -> tokens [B, L, W]: a lookup table plus positions.
pub struct TokenEmbed {
    table: Tensor,
    positions: Tensor,
}

impl TokenEmbed {
    /// Embeds ids below `vocab` at up to `length` positions into `width`.
    pub fn new(vb: &VarBuilder, vocab: usize, length: usize, width: usize) -> Result<Self> {
        Ok(TokenEmbed {
            table: vb.get_with_hints((vocab, width), "table", POSITION_INIT)?,
            positions: vb.get_with_hints((1, length, width), "positions", POSITION_INIT)?,
        })
    }
}

impl Module for TokenEmbed {
    fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let (batch, length) = ids.dims2()?;
        let width = self.table.dim(1)?;
        let positions = self.positions.narrow(1, 0, length)?;
        self.table
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((batch, length, width))?
            .broadcast_add(&positions)
    }
}
