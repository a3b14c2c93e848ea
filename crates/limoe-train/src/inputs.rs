//! From the data crate's host batches to the model's device tensors.

use std::sync::Arc;

use candle_core::Device;
use limoe_core::spec::ModelSpec;
use limoe_data::batch::{Batch, Preprocess};
use limoe_data::patches::PatchConfig;
use limoe_data::tokenizer::Tokenizer;
use limoe_model::{Images, Texts};

/// Image and caption preprocessing matching the model's shape.
pub fn preprocess(model: &ModelSpec) -> anyhow::Result<Preprocess> {
    Ok(Preprocess {
        patches: PatchConfig::new(model.image_size as u32, model.patch as u32)?,
        tokenizer: Arc::new(Tokenizer::new(model.vocab_size, model.text_length)?),
    })
}

/// Uploads a batch's images.
pub fn upload_images(batch: &Batch, device: &Device) -> anyhow::Result<Images> {
    Ok(Images::new(
        batch.patches.clone(),
        batch.len(),
        batch.num_patches,
        batch.patch_dim,
        device,
    )?)
}

/// Uploads a batch as model inputs.
pub fn upload(
    batch: &Batch,
    vocab_size: usize,
    device: &Device,
) -> anyhow::Result<(Images, Texts)> {
    let n = batch.len();
    let images = upload_images(batch, device)?;
    let mask: Vec<bool> = batch.mask.iter().map(|&m| m != 0).collect();
    let texts = Texts::new(
        batch.tokens.clone(),
        &mask,
        n,
        batch.text_length,
        vocab_size,
        device,
    )?;
    Ok((images, texts))
}

/// Image and text tokens a batch routes: `[image, real text]` (`with_text` false: the
/// images alone, as a classifier routes them).
pub fn routed_counts(batch: &Batch, with_text: bool) -> [usize; 2] {
    let text = match with_text {
        true => batch.mask.iter().filter(|&&m| m != 0).count(),
        false => 0,
    };
    [batch.len() * batch.num_patches, text]
}
