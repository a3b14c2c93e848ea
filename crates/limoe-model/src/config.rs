//! The model's shape and routing, as plain values (the model crate reads no files).

use crate::moe::{AuxWeights, MoeConfig};

/// Which network to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// One encoder shared by both modalities, with MoE blocks.
    Limoe,
    /// The same shared encoder without experts.
    Dense,
    /// Separate dense image and text encoders of the same shape.
    TwoTower,
}

/// How a modality's tokens become one vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    /// Mean over the real tokens.
    Mean,
    /// Multi-head attention pooling with a learned query.
    Map,
}

/// Everything that fixes the model's shape.
#[derive(Clone, Debug)]
pub struct ModelConfig {
    /// Which network.
    pub arch: Arch,
    /// Token width.
    pub width: usize,
    /// Transformer blocks per encoder.
    pub depth: usize,
    /// Hidden size of every MLP (and of every expert).
    pub mlp_dim: usize,
    /// Attention heads.
    pub heads: usize,
    /// Patch side in pixels.
    pub patch: usize,
    /// Image side in pixels.
    pub image_size: usize,
    /// Image channels.
    pub channels: usize,
    /// Text tokens per caption.
    pub text_length: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Size of the joint embedding space.
    pub embed_dim: usize,
    /// Pooling of image tokens.
    pub image_pooling: Pooling,
    /// Pooling of text tokens.
    pub text_pooling: Pooling,
    /// Indices of the MoE blocks (used by `Arch::Limoe` only).
    pub moe_blocks: Vec<usize>,
    /// Routing of the MoE blocks.
    pub moe: MoeConfig,
    /// Weights of the auxiliary losses.
    pub aux: AuxWeights,
    /// Initial contrastive logit scale (1 / temperature).
    pub logit_scale_init: f64,
}

impl ModelConfig {
    /// Patches per image.
    pub fn patches(&self) -> usize {
        (self.image_size / self.patch).pow(2)
    }

    /// Values per patch (P * P * C).
    pub fn patch_dim(&self) -> usize {
        self.patch * self.patch * self.channels
    }

    /// The MoE blocks this architecture really has (none for the baselines).
    pub fn active_moe_blocks(&self) -> &[usize] {
        match self.arch {
            Arch::Limoe => &self.moe_blocks,
            Arch::Dense | Arch::TwoTower => &[],
        }
    }

    /// Checks what would otherwise fail deep inside the forward pass.
    pub fn validate(&self) -> candle_core::Result<()> {
        let positive = [
            ("width", self.width),
            ("depth", self.depth),
            ("mlp_dim", self.mlp_dim),
            ("heads", self.heads),
            ("patch", self.patch),
            ("image_size", self.image_size),
            ("channels", self.channels),
            ("text_length", self.text_length),
            ("vocab_size", self.vocab_size),
            ("embed_dim", self.embed_dim),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            candle_core::bail!("model {name} must be at least 1");
        }
        if !self.width.is_multiple_of(self.heads) {
            candle_core::bail!("{} heads do not divide width {}", self.heads, self.width);
        }
        if !self.image_size.is_multiple_of(self.patch) {
            candle_core::bail!(
                "patch {} does not divide image_size {}",
                self.patch,
                self.image_size
            );
        }
        if let Some(block) = self.moe_blocks.iter().find(|&&b| b >= self.depth) {
            candle_core::bail!("MoE block {block} is beyond depth {}", self.depth);
        }
        if self.arch == Arch::Limoe && self.moe_blocks.is_empty() {
            candle_core::bail!("a LIMoE model needs at least one MoE block");
        }
        Ok(())
    }
}
