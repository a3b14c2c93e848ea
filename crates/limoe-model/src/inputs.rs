//! A batch of model inputs on the device: image patches, text tokens and the text padding.

use candle_core::{Device, Result, Tensor};

/// Added to the attention scores of padding keys: large enough to zero their weight after
/// softmax, finite so that no NaN can appear.
const PADDING_BIAS: f64 = -1e9;

/// Which text positions hold real tokens, in the forms the model needs.
#[derive(Clone, Debug)]
pub struct TextMask {
    /// [B, 1, 1, L]: 0 for tokens, a large negative number for padding (attention bias).
    pub key_bias: Tensor,
    /// [B, L, 1]: 1 for tokens, 0 for padding (masked mean pooling).
    pub weights: Tensor,
    /// Flat indices (b * L + t) of the real tokens, in order: the text tokens that are routed.
    pub valid: Tensor,
    /// The same indices on the host (routing groups and noise keys are built there).
    pub valid_indices: Vec<u32>,
    /// How many real tokens the batch has.
    pub valid_count: usize,
}

impl TextMask {
    /// Builds the mask from host flags `mask` [batch * len] (true = real token). Every
    /// caption needs at least one real token.
    pub fn new(mask: &[bool], batch: usize, len: usize, device: &Device) -> Result<TextMask> {
        if mask.len() != batch * len {
            candle_core::bail!(
                "text mask has {} entries, expected batch {batch} x length {len}",
                mask.len()
            );
        }
        if let Some(row) = (0..batch).find(|b| !mask[b * len..(b + 1) * len].contains(&true)) {
            candle_core::bail!("caption {row} of the batch has no tokens (all padding)");
        }
        let weights: Vec<f32> = mask.iter().map(|&m| f32::from(u8::from(m))).collect();
        let bias: Vec<f32> = mask
            .iter()
            .map(|&m| if m { 0.0 } else { PADDING_BIAS as f32 })
            .collect();
        let valid: Vec<u32> = (0..mask.len() as u32)
            .filter(|&i| mask[i as usize])
            .collect();
        Ok(TextMask {
            key_bias: Tensor::from_vec(bias, (batch, 1, 1, len), device)?,
            weights: Tensor::from_vec(weights, (batch, len, 1), device)?,
            valid_count: valid.len(),
            valid: Tensor::from_slice(&valid, valid.len(), device)?,
            valid_indices: valid,
        })
    }
}

/// Image patches [B, Np, P*P*C] (f32).
#[derive(Clone, Debug)]
pub struct Images {
    /// The patches.
    pub patches: Tensor,
}

/// Token ids [B, L] (u32) with their padding mask.
#[derive(Clone, Debug)]
pub struct Texts {
    /// The token ids.
    pub tokens: Tensor,
    /// Which positions are real tokens.
    pub mask: TextMask,
}

impl Images {
    /// Uploads `batch` images of `patches` x `patch_dim` values each.
    pub fn new(
        values: Vec<f32>,
        batch: usize,
        patches: usize,
        patch_dim: usize,
        device: &Device,
    ) -> Result<Images> {
        if values.len() != batch * patches * patch_dim {
            candle_core::bail!(
                "image batch has {} values, expected {batch} x {patches} patches x {patch_dim}",
                values.len()
            );
        }
        Ok(Images {
            patches: Tensor::from_vec(values, (batch, patches, patch_dim), device)?,
        })
    }
}

impl Texts {
    /// Uploads `batch` captions of `len` token ids with their mask; ids must be below `vocab`.
    pub fn new(
        ids: Vec<u32>,
        mask: &[bool],
        batch: usize,
        len: usize,
        vocab: usize,
        device: &Device,
    ) -> Result<Texts> {
        if ids.len() != batch * len {
            candle_core::bail!(
                "text batch has {} ids, expected batch {batch} x length {len}",
                ids.len()
            );
        }
        if let Some(bad) = ids.iter().find(|&&id| id as usize >= vocab) {
            candle_core::bail!("token id {bad} is outside the vocabulary of {vocab}");
        }
        Ok(Texts {
            tokens: Tensor::from_vec(ids, (batch, len), device)?,
            mask: TextMask::new(mask, batch, len, device)?,
        })
    }

    /// The number of captions.
    pub fn batch(&self) -> usize {
        self.tokens.dims()[0]
    }
}
