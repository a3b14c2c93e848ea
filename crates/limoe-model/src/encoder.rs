//! The transformer encoder: pre-LN blocks whose MLP is dense or a mixture of experts.
//!
//! Image and text sequences go through the same blocks as separate sequences (attention never
//! mixes modalities). In an MoE block the image tokens and the real (non-padding) text tokens
//! of the batch are routed together, so that both modalities compete for the same expert
//! capacity, as in LIMoE: a routing group holds whole examples, their image tokens first,
//! then their text tokens ([`Groups::of_examples`]).

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;
use limoe_core::random::splitmix64_next;
use limoe_core::spec::{ModelSpec, MoeSpec};

use crate::attention::Attention;
use crate::inputs::TextMask;
use crate::layers::{LayerNorm, Mlp};
use crate::moe::{
    AuxTerms, ExpertGroup, Groups, Moe, MoeConfig, RouteMode, RoutedTokens, RoutingStats,
    TokenCounts,
};

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
    /// Their weighted sum, the block's share of the loss.
    pub aux_loss: Tensor,
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
    /// Builds `spec.depth` blocks; the blocks listed in `moe_blocks` get experts `moe`, all
    /// of them or, with an expert `group`, this rank's share.
    pub fn new(
        vb: &VarBuilder,
        spec: &ModelSpec,
        moe: &MoeConfig,
        moe_blocks: &[usize],
        group: Option<&ExpertGroup>,
    ) -> Result<Encoder> {
        let blocks = (0..spec.depth)
            .map(|i| {
                let vb = vb.pp(format!("block{i}"));
                let ffn = if moe_blocks.contains(&i) {
                    Ffn::Moe(Box::new(Moe::new(vb.pp("moe"), moe, group)?))
                } else {
                    Ffn::Dense(Mlp::new(&vb.pp("mlp"), spec.width, spec.mlp_dim)?)
                };
                Ok(Block {
                    norm1: LayerNorm::new(&vb.pp("norm1"), spec.width)?,
                    attention: Attention::new(&vb.pp("attention"), spec.width, spec.heads)?,
                    norm2: LayerNorm::new(&vb.pp("norm2"), spec.width)?,
                    ffn,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Encoder { blocks })
    }

    /// Runs every block; returns the final streams and one report per MoE block. Inside, each
    /// stream is flat [B * N, W] (a reshape is a node of candle's backward: zeros and an add).
    pub fn forward<'a>(
        &self,
        streams: Streams<'a>,
        mode: RouteMode,
    ) -> Result<(Streams<'a>, Vec<BlockRouting>)> {
        let flat = |x: &Tensor| -> Result<(Tensor, (usize, usize, usize))> {
            let dims = x.dims3()?;
            Ok((x.reshape((dims.0 * dims.1, dims.2))?, dims))
        };
        let mut image = streams.image.as_ref().map(flat).transpose()?;
        let mut text = match &streams.text {
            Some((t, mask)) => Some((flat(t)?, *mask)),
            None => None,
        };
        let routed = match self.blocks.iter().find_map(|b| match &b.ffn {
            Ffn::Moe(moe) => Some(&moe.config().routing),
            Ffn::Dense(_) => None,
        }) {
            Some(moe) => Some(routed_tokens(moe, &streams, mode)?),
            None => None,
        };
        let mut routing = Vec::new();
        for (index, block) in self.blocks.iter().enumerate() {
            if let Some((x, (_, tokens, _))) = &mut image {
                *x = block.attention.residual(&block.norm1, x, *tokens, None)?;
            }
            if let Some(((x, (_, tokens, _)), mask)) = &mut text {
                *x = block
                    .attention
                    .residual(&block.norm1, x, *tokens, Some(&mask.key_bias))?;
            }
            match &block.ffn {
                Ffn::Dense(mlp) => {
                    if let Some((x, _)) = &mut image {
                        *x = mlp.residual(&block.norm2, x)?;
                    }
                    if let Some(((x, _), _)) = &mut text {
                        *x = mlp.residual(&block.norm2, x)?;
                    }
                }
                Ffn::Moe(moe) => {
                    let mode = match mode {
                        RouteMode::Train {
                            noise_seed,
                            first_example,
                        } => RouteMode::Train {
                            noise_seed: splitmix64_next(noise_seed ^ splitmix64_next(index as u64)),
                            first_example,
                        },
                        evaluation => evaluation,
                    };
                    let text = text.as_mut().map(|((x, _), mask)| (x, *mask));
                    let image = image.as_mut().map(|(x, _)| x);
                    let routed = routed
                        .as_ref()
                        .ok_or_else(|| candle_core::Error::msg("an MoE block without routing"))?;
                    routing.push(route(index, moe, &block.norm2, image, text, routed, mode)?);
                }
            }
        }
        let unflat = |(x, dims): (Tensor, (usize, usize, usize))| x.reshape(dims);
        let streams = Streams {
            image: image.map(unflat).transpose()?,
            text: match text {
                Some((stream, mask)) => Some((unflat(stream)?, mask)),
                None => None,
            },
        };
        Ok((streams, routing))
    }
}

/// The routing layout of a batch: image rows (b * Np + p) first, then the real text tokens in
/// [`TextMask::valid`] order; groups of whole examples (`moe.group_size`); each token's noise
/// keyed by its example's index in the global batch and its position in the example.
fn routed_tokens(moe: &MoeSpec, streams: &Streams, mode: RouteMode) -> Result<RoutedTokens> {
    let (mut examples, mut patches) = (0, 0);
    if let Some(image) = &streams.image {
        (examples, patches, _) = image.dims3()?;
    }
    let (mut length, mut valid): (usize, &[u32]) = (0, &[]);
    if let Some((text, mask)) = &streams.text {
        (examples, length, _) = text.dims3()?;
        valid = &mask.valid_indices;
    }
    let stride = (patches + length) as u64;
    let first = match mode {
        RouteMode::Train { first_example, .. } => first_example,
        RouteMode::Eval | RouteMode::Capped { .. } => 0,
    };
    let mut text_per_example = vec![0; examples];
    let mut noise_keys: Vec<u64> = (0..(examples * patches) as u64)
        .map(|row| (first + row / patches as u64) * stride + row % patches as u64)
        .collect();
    for &index in valid {
        let (example, position) = (index as usize / length, index as usize % length);
        text_per_example[example] += 1;
        noise_keys.push((first + example as u64) * stride + (patches + position) as u64);
    }
    let counts = TokenCounts {
        image: examples * patches,
        text: valid.len(),
    };
    let groups = match moe.examples_per_group(patches + length) {
        Some(per_group) => Groups::of_examples(patches, &text_per_example, per_group)?,
        None => Groups::consecutive(counts.total(), None)?,
    };
    RoutedTokens::new(counts, groups, noise_keys)
}

/// The MoE half of a block: routes image and real text tokens together (flat streams
/// [B * N, W]) as `routed` lays them out, adds the experts' output to the residual streams.
fn route(
    block: usize,
    moe: &Moe,
    norm: &LayerNorm,
    image: Option<&mut Tensor>,
    text: Option<(&mut Tensor, &TextMask)>,
    routed: &RoutedTokens,
    mode: RouteMode,
) -> Result<BlockRouting> {
    let mut parts = Vec::with_capacity(2);
    if let Some(image) = &image {
        parts.push(norm.forward(image)?);
    }
    if let Some((text, mask)) = &text {
        parts.push(norm.forward(text)?.index_select(&mask.valid, 0)?);
    }
    let routed_rows = match parts.len() {
        0 => candle_core::bail!("an MoE block got neither image nor text tokens"),
        1 => parts.remove(0),
        _ => Tensor::cat(&parts, 0)?,
    };
    let output = moe.forward(&routed_rows, routed, mode)?;
    let counts = routed.counts;
    if let Some(image) = image {
        *image = (&*image + output.y.narrow(0, 0, counts.image)?)?;
    }
    if let Some((text, mask)) = text {
        let routed_text = output.y.narrow(0, counts.image, counts.text)?;
        *text = limoe_ops::scatter_add_rows(text, &mask.valid, &routed_text)?;
    }
    Ok(BlockRouting {
        block,
        aux: output.aux,
        aux_loss: output.aux_loss,
        stats: output.stats,
        experts: output.experts,
    })
}
