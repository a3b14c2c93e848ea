//! The transformer encoder: pre-LN blocks whose MLP is dense or a mixture of experts.
//!
//! Image and text sequences go through the same blocks as separate sequences (attention never
//! mixes modalities). In an MoE block the image tokens and the real (non-padding) text tokens
//! of the batch are routed together, image tokens first, so that both modalities compete for
//! the same expert capacity, as in LIMoE.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::attention::Attention;
use crate::config::ModelConfig;
use crate::inputs::TextMask;
use crate::layers::{LayerNorm, Mlp};
use crate::moe::{AuxTerms, Moe, RouteMode, RoutingStats, TokenCounts};
use crate::random::mix64;

/// The token sequences flowing through the encoder; either may be absent.
#[derive(Clone, Debug)]
pub struct Streams<'a> {
    /// Image tokens [B, Np, W].
    pub image: Option<Tensor>,
    /// Text tokens [B, L, W] and their mask.
    pub text: Option<(Tensor, &'a TextMask)>,
}

/// What one MoE block reports for a forward pass.
pub struct BlockRouting {
    /// Index of the block in its encoder.
    pub block: usize,
    /// Unweighted auxiliary loss terms.
    pub aux: AuxTerms,
    /// Routing statistics per modality.
    pub stats: RoutingStats,
    /// [T, K] expert chosen per routed token and choice (`experts` = dropped); image tokens
    /// first (b * Np + p), then the real text tokens in [`TextMask::valid`] order.
    pub experts: Tensor,
}

enum Ffn {
    Dense(Mlp),
    Moe(Box<Moe>),
}

struct Block {
    norm1: LayerNorm,
    attention: Attention,
    norm2: LayerNorm,
    ffn: Ffn,
}

/// A stack of pre-LN transformer blocks.
pub struct Encoder {
    blocks: Vec<Block>,
}

impl Encoder {
    /// Builds `config.depth` blocks; the blocks listed in `moe_blocks` get experts.
    pub fn new(vb: &VarBuilder, config: &ModelConfig, moe_blocks: &[usize]) -> Result<Encoder> {
        let blocks = (0..config.depth)
            .map(|i| {
                let vb = vb.pp(format!("block{i}"));
                let ffn = if moe_blocks.contains(&i) {
                    Ffn::Moe(Box::new(Moe::new(vb.pp("moe"), &config.moe)?))
                } else {
                    Ffn::Dense(Mlp::new(&vb.pp("mlp"), config.width, config.mlp_dim)?)
                };
                Ok(Block {
                    norm1: LayerNorm::new(&vb.pp("norm1"), config.width)?,
                    attention: Attention::new(&vb.pp("attention"), config.width, config.heads)?,
                    norm2: LayerNorm::new(&vb.pp("norm2"), config.width)?,
                    ffn,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Encoder { blocks })
    }

    /// Runs every block; returns the final streams and one report per MoE block.
    pub fn forward<'a>(
        &self,
        mut streams: Streams<'a>,
        mode: RouteMode,
    ) -> Result<(Streams<'a>, Vec<BlockRouting>)> {
        let mut routing = Vec::new();
        for (index, block) in self.blocks.iter().enumerate() {
            if let Some(image) = &streams.image {
                let attended = block
                    .attention
                    .forward(&block.norm1.forward(image)?, None)?;
                streams.image = Some((image + attended)?);
            }
            if let Some((text, mask)) = &streams.text {
                let attended = block
                    .attention
                    .forward(&block.norm1.forward(text)?, Some(&mask.key_bias))?;
                streams.text = Some(((text + attended)?, mask));
            }
            match &block.ffn {
                Ffn::Dense(mlp) => {
                    if let Some(image) = &streams.image {
                        streams.image = Some((image + mlp.forward(&block.norm2.forward(image)?)?)?);
                    }
                    if let Some((text, mask)) = &streams.text {
                        let update = mlp.forward(&block.norm2.forward(text)?)?;
                        streams.text = Some(((text + update)?, mask));
                    }
                }
                Ffn::Moe(moe) => {
                    let mode = match mode {
                        RouteMode::Train { noise_seed } => RouteMode::Train {
                            noise_seed: mix64(noise_seed ^ mix64(index as u64)),
                        },
                        RouteMode::Eval => RouteMode::Eval,
                    };
                    routing.push(route(index, moe, &block.norm2, &mut streams, mode)?);
                }
            }
        }
        Ok((streams, routing))
    }
}

/// The MoE half of a block: routes image and real text tokens together, adds the experts'
/// output to the residual streams.
fn route(
    block: usize,
    moe: &Moe,
    norm: &LayerNorm,
    streams: &mut Streams,
    mode: RouteMode,
) -> Result<BlockRouting> {
    let mut parts = Vec::with_capacity(2);
    let mut counts = TokenCounts { image: 0, text: 0 };
    if let Some(image) = &streams.image {
        let (batch, tokens, width) = image.dims3()?;
        counts.image = batch * tokens;
        parts.push(norm.forward(image)?.reshape((batch * tokens, width))?);
    }
    if let Some((text, mask)) = &streams.text {
        let (batch, tokens, width) = text.dims3()?;
        counts.text = mask.valid_count;
        let flat = norm.forward(text)?.reshape((batch * tokens, width))?;
        parts.push(flat.index_select(&mask.valid, 0)?);
    }
    let routed = match parts.len() {
        0 => candle_core::bail!("an MoE block got neither image nor text tokens"),
        1 => parts.remove(0),
        _ => Tensor::cat(&parts, 0)?,
    };
    let output = moe.forward(&routed, counts, mode)?;
    if let Some(image) = &streams.image {
        let update = output
            .y
            .narrow(0, 0, counts.image)?
            .reshape(image.shape())?;
        streams.image = Some((image + update)?);
    }
    if let Some((text, mask)) = &streams.text {
        let (batch, tokens, width) = text.dims3()?;
        let routed_text = output.y.narrow(0, counts.image, counts.text)?;
        let update = Tensor::zeros((batch * tokens, width), text.dtype(), text.device())?
            .index_add(&mask.valid, &routed_text, 0)?
            .reshape((batch, tokens, width))?;
        streams.text = Some(((text + update)?, mask));
    }
    Ok(BlockRouting {
        block,
        aux: output.aux,
        stats: output.stats,
        experts: output.experts,
    })
}
