//! From the data crate's host batches to the model's device tensors.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use candle_core::Device;
use limoe_core::StageContext;
use limoe_core::spec::ModelSpec;
use limoe_data::batch::{Batch, Preprocess};
use limoe_data::patches::PatchConfig;
use limoe_data::shards::INDEX;
use limoe_data::tokenizer::Tokenizer;
use limoe_model::{Images, Texts};

/// Image and caption preprocessing matching the model's shape.
pub fn preprocess(model: &ModelSpec) -> anyhow::Result<Preprocess> {
    if model.channels != 3 {
        bail!(
            "model.channels is {}, but images are decoded as RGB (3 channels); set channels: 3",
            model.channels
        );
    }
    Ok(Preprocess {
        patches: PatchConfig::new(model.image_size as u32, model.patch as u32)?,
        tokenizer: Arc::new(Tokenizer::new(model.vocab_size, model.text_length)?),
    })
}

/// Uploads a batch as model inputs.
pub fn upload(
    batch: &Batch,
    vocab_size: usize,
    device: &Device,
) -> anyhow::Result<(Images, Texts)> {
    let n = batch.len();
    let images = Images::new(
        batch.patches.clone(),
        n,
        batch.num_patches,
        batch.patch_dim,
        device,
    )?;
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

/// The dataset directory among a stage's inputs: the one written by an ingest stage.
pub fn dataset_dir(ctx: &StageContext) -> anyhow::Result<PathBuf> {
    ctx.inputs
        .values()
        .map(|artifact| artifact.dir.clone())
        .find(|dir| dir.join(INDEX).is_file())
        .with_context(|| {
            format!(
                "stage `{}` needs the output of an ingest stage (a directory with {INDEX}); \
                 add the ingest stage's id to its `needs`",
                ctx.stage.id
            )
        })
}

/// The train stage's output among a stage's inputs: the one holding checkpoints.
pub fn training_dir(ctx: &StageContext, checkpoints: &str) -> anyhow::Result<PathBuf> {
    ctx.inputs
        .values()
        .map(|artifact| artifact.dir.clone())
        .find(|dir| dir.join(checkpoints).is_dir())
        .with_context(|| {
            format!(
                "stage `{}` needs the output of a train stage (a directory with {checkpoints}/); \
                 add the train stage's id to its `needs`",
                ctx.stage.id
            )
        })
}
