//! What a model costs before it is built: parameters, FLOPs per training step and the memory
//! training needs. `limoe plan` prints these; a run that cannot fit stops with them.

use limoe_core::spec::{Arch, ModelSpec, Pooling};

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
        self.state_bytes.saturating_add(self.activation_bytes)
    }
}

/// Dense pre-LN block parameters, attention and norms only.
fn attention_block(w: f64) -> f64 {
    2.0 * (2.0 * w) + (3.0 * w * w + 3.0 * w) + (w * w + w)
}

fn mlp(w: f64, m: f64) -> f64 {
    w * m + m + m * w + w
}

fn head(spec: &ModelSpec, pooling: Pooling) -> f64 {
    let w = spec.width as f64;
    let map = match pooling {
        Pooling::Mean => 0.0,
        Pooling::Map => w + (w * w + w) + (2.0 * w * w + 2.0 * w) + (w * w + w),
    };
    2.0 * w + map + w * spec.embed_dim() as f64
}

/// The cost of training the model `spec` describes with `batch` image-text pairs per step, processed in
/// micro-batches of `micro_batch` pairs (gradient accumulation).
///
/// Counted in f64, exact below 2^53 and never overflowing: a spec's shape may be far too
/// large to build, and the plan must still say so (the counts saturate when converted).
pub fn cost(spec: &ModelSpec, batch: usize, micro_batch: usize) -> Cost {
    let w = spec.width as f64;
    let m = spec.mlp_dim as f64;
    let experts = spec.moe.experts as f64;
    let k = spec.moe.top_k as f64;
    let moe_count = spec.active_moe_blocks().len();
    let moe_blocks = moe_count as f64;
    let dense_blocks = spec.depth.saturating_sub(moe_count) as f64;
    let depth = spec.depth as f64;
    let heads = spec.heads as f64;
    let towers = if spec.arch == Arch::TwoTower {
        2.0
    } else {
        1.0
    };
    let patch_dim = spec.patch_dim() as f64;
    let image_tokens = spec.patches() as f64;
    let text_tokens = spec.text_length as f64;
    let (batch, micro_batch) = (batch as f64, micro_batch as f64);

    let moe_block = attention_block(w) + w * experts + experts * mlp(w, m);
    let encoder = dense_blocks * (attention_block(w) + mlp(w, m)) + moe_blocks * moe_block;
    let embeddings =
        patch_dim * w + w + image_tokens * w + spec.vocab_size as f64 * w + text_tokens * w;
    let heads_params = head(spec, spec.pooling.image) + head(spec, spec.pooling.text);
    let total_params = towers * encoder + embeddings + heads_params + 1.0;

    // One token of one modality meets one encoder's blocks, K experts per MoE block.
    let active_block_moe = attention_block(w) + w * experts + k * mlp(w, m);
    let active_encoder =
        dense_blocks * (attention_block(w) + mlp(w, m)) + moe_blocks * active_block_moe;
    let active_params = active_encoder + embeddings + heads_params + 1.0;

    // Matmul FLOPs per token and block: 2 x the weights it multiplies, plus attention
    // scores and mixing (2 x 2 x sequence x width).
    let matmul_per_token = |tokens: f64| {
        let weights = dense_blocks * (4.0 * w * w + 2.0 * w * m)
            + moe_blocks * (4.0 * w * w + w * experts + k * 2.0 * w * m);
        2.0 * weights + depth * 4.0 * tokens * w
    };
    let forward = batch
        * (image_tokens * (matmul_per_token(image_tokens) + 2.0 * patch_dim * w)
            + text_tokens * matmul_per_token(text_tokens))
        + 2.0 * batch * batch * spec.embed_dim() as f64;
    let step_flops = 3.0 * forward;

    let state_bytes = 4.0 * 4.0 * total_params;
    // Kept per token and block: ~10 width-sized tensors (norms, attention in/out, residuals),
    // the MLP hidden activations twice (pre and post GELU, K of them in MoE blocks), and the
    // attention probabilities (heads x sequence).
    let per_token = |tokens: f64| {
        let hidden = dense_blocks * 2.0 * m + moe_blocks * 2.0 * k * m;
        depth * (10.0 * w + heads * tokens) + hidden
    };
    let activation_bytes = 4.0
        * micro_batch
        * (image_tokens * per_token(image_tokens) + text_tokens * per_token(text_tokens));

    Cost {
        total_params: total_params as usize,
        active_params: active_params as usize,
        step_flops,
        state_bytes: state_bytes as u64,
        activation_bytes: activation_bytes as u64,
    }
}
