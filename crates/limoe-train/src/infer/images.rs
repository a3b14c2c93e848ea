//! Unit embeddings of a person's images, preprocessed as training preprocessed its pairs
//! (crates/limoe-data/src/patches.rs: shorter side to the model's size, centre crop).

use anyhow::bail;
use limoe_data::named_images::{NamedImage, patches_of};
use limoe_model::Images;
use limoe_model::moe::RouteMode;
use limoe_ops::pool::on_pool;

use crate::model_build::Built;

/// The unit embeddings of `images`, `[images, dim]` row-major, in one forward pass; an image
/// that does not decode is an error naming it.
pub fn embed_images(built: &Built, images: &[NamedImage]) -> anyhow::Result<Vec<f32>> {
    let config = built.preprocess.patches;
    let patches = patches_of(&config, images)?;
    let batch = Images::new(
        patches,
        images.len(),
        config.num_patches(),
        config.patch_dim(),
        &built.device,
    )?;
    let encoded = on_pool(|| built.model.encode(Some(&batch), None, RouteMode::Eval))?;
    let Some(image) = encoded.image else {
        bail!("the model returned no embedding for a batch of images");
    };
    Ok(image.flatten_all()?.to_vec1()?)
}
