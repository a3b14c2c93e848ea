//! The expert each patch of an image and each token of a caption goes to in every MoE block,
//! at evaluation routing: what `limoe route` draws.

use anyhow::{Context, bail};
use limoe_data::decode::decode_rgb;
use limoe_data::named_images::NamedImage;
use limoe_model::encoder::BlockRouting;
use limoe_model::moe::RouteMode;
use limoe_model::{Images, Texts};
use limoe_ops::pool::on_pool;

use crate::model_build::Built;

/// The first-choice expert of each token one MoE block routed.
pub struct BlockExperts {
    /// The block's index in its encoder.
    pub block: usize,
    /// Each token's expert, in token order.
    pub experts: Vec<u32>,
}

/// An image as the model saw it, with the expert of each of its patches.
pub struct RoutedImage {
    /// Pixels of the resized and cropped image, `side * side` RGB triples row-major.
    pub view: Vec<u8>,
    /// Its side in pixels (`model.image_size`).
    pub side: u32,
    /// Patches along a side.
    pub grid: u32,
    /// Per MoE block, each patch's expert, patches in row-major grid order.
    pub blocks: Vec<BlockExperts>,
}

/// A caption's tokens, with the expert of each.
pub struct RoutedCaption {
    /// The text of each token, start and end tokens included.
    pub tokens: Vec<String>,
    /// Per MoE block, each token's expert.
    pub blocks: Vec<BlockExperts>,
}

/// Routes one image; an image that does not decode is an error naming it.
pub fn route_image(built: &Built, image: &NamedImage) -> anyhow::Result<RoutedImage> {
    let config = built.preprocess.patches;
    let view = config.resize(decode_rgb(&image.bytes).with_context(|| image.name.clone())?);
    let mut patches = vec![0.0; config.image_len()];
    config.patchify(&view, &mut patches);
    let images = Images::new(
        patches,
        1,
        config.num_patches(),
        config.patch_dim(),
        &built.device,
    )?;
    let encoded = on_pool(|| built.model.encode(Some(&images), None, RouteMode::Eval))?;
    let spec = built.model.spec();
    Ok(RoutedImage {
        view: view.into_raw(),
        side: config.side(),
        grid: (spec.image_size / spec.patch) as u32,
        blocks: first_choices(&encoded.routing)?,
    })
}

/// Routes one caption, cut to the model's text length as training cut captions.
pub fn route_caption(built: &Built, caption: &str) -> anyhow::Result<RoutedCaption> {
    let tokenizer = &built.preprocess.tokenizer;
    let (ids, mask) = tokenizer.encode(caption);
    let tokens = (ids.iter().zip(&mask))
        .filter(|&(_, &m)| m != 0)
        .map(|(&id, _)| tokenizer.token_text(id))
        .collect();
    let mask: Vec<bool> = mask.iter().map(|&m| m != 0).collect();
    let length = ids.len();
    let texts = Texts::new(ids, &mask, 1, length, tokenizer.vocab_size(), &built.device)?;
    let encoded = on_pool(|| built.model.encode(None, Some(&texts), RouteMode::Eval))?;
    Ok(RoutedCaption {
        tokens,
        blocks: first_choices(&encoded.routing)?,
    })
}

/// Each routed token's first choice in every block that routed any (with separate towers,
/// the other tower's blocks route none).
fn first_choices(routing: &[BlockRouting]) -> anyhow::Result<Vec<BlockExperts>> {
    let mut blocks = Vec::new();
    for block in routing {
        let choices: Vec<Vec<u32>> = block.experts.to_vec2()?;
        let experts: Option<Vec<u32>> = choices.iter().map(|c| c.first().copied()).collect();
        let Some(experts) = experts else {
            bail!("block {} routed a token to no expert", block.block);
        };
        if !experts.is_empty() {
            blocks.push(BlockExperts {
                block: block.block,
                experts,
            });
        }
    }
    Ok(blocks)
}
