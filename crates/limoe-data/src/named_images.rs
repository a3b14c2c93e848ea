//! Images a person names (files, or rows of a Parquet shard) as model inputs. Unlike the
//! batcher of training data (crates/limoe-data/src/batch.rs), which skips and counts a pair
//! whose image does not decode, an image here that does not decode is an error naming it:
//! the person asked for that one.

use anyhow::Context;
use rayon::prelude::*;

use crate::patches::PatchConfig;

/// An image's bytes (PNG or JPEG) and the name errors give it (its path, or its row's key).
pub struct NamedImage {
    /// What errors call it.
    pub name: String,
    /// PNG or JPEG bytes.
    pub bytes: Vec<u8>,
}

impl NamedImage {
    /// The file at `path`, named by its path; an unreadable file is an error naming it.
    pub fn read(path: &std::path::Path) -> anyhow::Result<NamedImage> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        Ok(NamedImage {
            name: path.display().to_string(),
            bytes,
        })
    }
}

/// The patches of `images` in order, `[images, num_patches, patch_dim]` row-major, decoded,
/// resized and patchified in parallel; the first image that does not decode is an error
/// naming it.
pub fn patches_of(config: &PatchConfig, images: &[NamedImage]) -> anyhow::Result<Vec<f32>> {
    let len = config.image_len();
    let mut out = vec![0.0; images.len() * len];
    out.par_chunks_exact_mut(len)
        .zip(images)
        .try_for_each(|(dst, image)| {
            (config.bytes_to_patches(&image.bytes, dst)).with_context(|| image.name.clone())
        })?;
    Ok(out)
}
