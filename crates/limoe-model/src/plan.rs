//! What a model costs before it is built: parameters, FLOPs per training step and the memory
//! training needs. `limoe plan` prints these; a run that cannot fit stops with them.

use crate::config::{Arch, ModelConfig, Pooling};

/// Parameter counts, FLOPs and memory of one model at one batch size.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cost {
    /// Every trainable scalar.
    pub total_params: usize,
    /// Parameters one token meets on its way through (top-K experts, not all of them).
    pub active_params: usize,
    /// Multiply-adds x 2 of one forward and backward pass over a batch (matmuls and
    /// attention scores; elementwise work is ignored).
    pub step_flops: f64,
    /// Weights, gradients and the two AdamW moments, in bytes (f32).
    pub state_bytes: u64,
    /// Activations kept for the backward pass of one micro-batch, in bytes (an estimate).
    pub activation_bytes: u64,
}

impl Cost {
    /// Everything training needs in memory.
    pub fn training_bytes(&self) -> u64 {
        self.state_bytes + self.activation_bytes
    }
}

/// Dense pre-LN block parameters, attention and norms only.
fn attention_block(w: usize) -> usize {
    2 * (2 * w) + (3 * w * w + 3 * w) + (w * w + w)
}

fn mlp(w: usize, m: usize) -> usize {
    w * m + m + m * w + w
}

fn head(config: &ModelConfig, pooling: Pooling) -> usize {
    let w = config.width;
    let map = match pooling {
        Pooling::Mean => 0,
        Pooling::Map => w + (w * w + w) + (2 * w * w + 2 * w) + (w * w + w),
    };
    2 * w + map + w * config.embed_dim
}

/// The cost of training `config` with `batch` image-text pairs per step, processed in
/// micro-batches of `micro_batch` pairs (gradient accumulation).
pub fn cost(config: &ModelConfig, batch: usize, micro_batch: usize) -> Cost {
    let w = config.width;
    let m = config.mlp_dim;
    let experts = config.moe.experts;
    let k = config.moe.top_k;
    let moe_blocks = config.active_moe_blocks().len();
    let dense_blocks = config.depth - moe_blocks;
    let towers = if config.arch == Arch::TwoTower { 2 } else { 1 };

    let moe_block = attention_block(w) + w * experts + experts * mlp(w, m);
    let encoder = dense_blocks * (attention_block(w) + mlp(w, m)) + moe_blocks * moe_block;
    let embeddings = config.patch_dim() * w
        + w
        + config.patches() * w
        + config.vocab_size * w
        + config.text_length * w;
    let heads = head(config, config.image_pooling) + head(config, config.text_pooling);
    let total_params = towers * encoder + embeddings + heads + 1;

    // One token of one modality meets one encoder's blocks, K experts per MoE block.
    let active_block_moe = attention_block(w) + w * experts + k * mlp(w, m);
    let active_encoder =
        dense_blocks * (attention_block(w) + mlp(w, m)) + moe_blocks * active_block_moe;
    let active_params = active_encoder + embeddings + heads + 1;

    // Matmul FLOPs per token and block: 2 x the weights it multiplies, plus attention
    // scores and mixing (2 x 2 x sequence x width).
    let matmul_per_token = |tokens: usize| {
        let weights = dense_blocks * (4 * w * w + 2 * w * m)
            + moe_blocks * (4 * w * w + w * experts + k * 2 * w * m);
        2.0 * weights as f64 + (config.depth * 4 * tokens * w) as f64
    };
    let image_tokens = config.patches();
    let text_tokens = config.text_length;
    let forward = batch as f64
        * (image_tokens as f64
            * (matmul_per_token(image_tokens) + 2.0 * (config.patch_dim() * w) as f64)
            + text_tokens as f64 * matmul_per_token(text_tokens))
        + 2.0 * (batch * batch * config.embed_dim) as f64;
    let step_flops = 3.0 * forward;

    let state_bytes = 4 * 4 * total_params as u64;
    // Kept per token and block: ~10 width-sized tensors (norms, attention in/out, residuals),
    // the MLP hidden activations twice (pre and post GELU, K of them in MoE blocks), and the
    // attention probabilities (heads x sequence).
    let per_token = |tokens: usize| {
        let hidden = dense_blocks * 2 * m + moe_blocks * 2 * k * m;
        (config.depth * (10 * w + config.heads * tokens) + hidden) as u64
    };
    let activation_bytes = 4
        * micro_batch as u64
        * (image_tokens as u64 * per_token(image_tokens)
            + text_tokens as u64 * per_token(text_tokens));

    Cost {
        total_params,
        active_params,
        step_flops,
        state_bytes,
        activation_bytes,
    }
}
