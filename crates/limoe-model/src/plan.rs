//! What a model costs before it is built: parameters, FLOPs per training step and the memory
//! training needs. `limoe plan` prints these; a run that cannot fit stops with them.

use limoe_core::spec::{Arch, ModelSpec, Pooling, Precision};

use crate::moe::capacity;

/// Where training runs: `world` ranks split each micro-batch between them (data parallelism),
/// and each group of `expert_parallel` of them shares one copy of the experts, every rank
/// holding `moe.experts / expert_parallel` experts of every MoE block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// Ranks, one per device.
    pub world: usize,
    /// Ranks that share one copy of the experts (`train.expert_parallel`).
    pub expert_parallel: usize,
}

impl Placement {
    /// One process holding the whole model and the whole micro-batch.
    pub const SOLO: Placement = Placement {
        world: 1,
        expert_parallel: 1,
    };
}

/// Bytes one rank sends per training step, by collective. The model is a ring: an all-reduce
/// of `s` bytes over `n` ranks sends `2 (n - 1) / n * s`, an all-gather of `s` bytes from each
/// rank `(n - 1) * s`; an all-to-all sends the `(P - 1) / P` of its buffer bound for other ranks.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Communication {
    /// All-reduce of the dense (replicated) gradients over every rank, once per step.
    pub dense_all_reduce: u64,
    /// All-reduce of a rank's expert gradients over the `world / expert_parallel` ranks that
    /// hold the same experts, once per step.
    pub expert_all_reduce: u64,
    /// All-to-all of the MoE dispatch buffers (experts x capacity rows of `width` per routing
    /// group): dispatch and return in every forward pass (two per micro-batch when it
    /// accumulates: the caching pass and the training pass) and again in the backward pass,
    /// per MoE block and micro-batch.
    pub all_to_all: u64,
    /// All-gather of the image and text embeddings the contrastive loss contrasts, in every
    /// forward pass of every micro-batch.
    pub all_gather: u64,
}

impl Communication {
    /// Every collective together.
    pub fn total(&self) -> u64 {
        [
            self.dense_all_reduce,
            self.expert_all_reduce,
            self.all_to_all,
            self.all_gather,
        ]
        .into_iter()
        .fold(0, u64::saturating_add)
    }
}

/// Parameter counts, FLOPs, memory per device and communication of one model at one batch
/// size and placement.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cost {
    /// Where the numbers per device are for.
    pub placement: Placement,
    /// Every trainable scalar.
    pub total_params: usize,
    /// Parameters one token meets on its way through (top-K experts, not all of them).
    pub active_params: usize,
    /// Multiply-adds x 2 of one forward and backward pass over a batch (matmuls and
    /// attention scores; elementwise work is ignored).
    pub step_flops: f64,
    /// The weights one device holds, in bytes (f32): every dense parameter and its share of
    /// the experts.
    pub weight_bytes: u64,
    /// The copy of those weights a step computes with in bf16 mixed precision (0 in f32).
    pub compute_copy_bytes: u64,
    /// Activations one device keeps for the backward pass of its share of a micro-batch, in
    /// bytes (an estimate; 2 bytes per value in bf16).
    pub activation_bytes: u64,
    /// What each rank sends per step.
    pub communication: Communication,
}

impl Cost {
    /// The two AdamW moments, each shaped as the weights.
    pub fn moment_bytes(&self) -> u64 {
        self.weight_bytes.saturating_mul(2)
    }

    /// Weights, their gradients and the AdamW moments.
    pub fn state_bytes(&self) -> u64 {
        (self.weight_bytes.saturating_mul(2)).saturating_add(self.moment_bytes())
    }

    /// Everything training needs in memory on one device.
    pub fn training_bytes(&self) -> u64 {
        (self.state_bytes())
            .saturating_add(self.compute_copy_bytes)
            .saturating_add(self.activation_bytes)
    }
}

/// Dense pre-LN block parameters, attention and norms only.
fn attention_block(w: f64) -> f64 {
    2.0 * (2.0 * w) + (3.0 * w * w + 3.0 * w) + (w * w + w)
}

fn mlp(w: f64, m: f64) -> f64 {
    w * m + m + m * w + w
}

/// The final norm and pooling of a head.
fn pooler(spec: &ModelSpec, pooling: Pooling) -> f64 {
    let w = spec.width as f64;
    let map = match pooling {
        Pooling::Mean => 0.0,
        Pooling::Map => w + (w * w + w) + (2.0 * w * w + 2.0 * w) + (w * w + w),
    };
    2.0 * w + map
}

/// Every head's parameters: both projections to the joint space and the logit scale, or a
/// classifier's logits layer.
fn head_params(spec: &ModelSpec) -> f64 {
    let w = spec.width as f64;
    match spec.classifier {
        Some(classifier) => {
            let classes = classifier.classes as f64;
            pooler(spec, spec.pooling.image) + w * classes + classes
        }
        None => {
            let projection = w * spec.embed_dim() as f64;
            pooler(spec, spec.pooling.image)
                + pooler(spec, spec.pooling.text)
                + 2.0 * projection
                + 1.0
        }
    }
}

/// Matmul FLOPs of one forward pass over `examples`, without the experts' MLPs: the blocks'
/// attention, the dense blocks' MLPs, the routers, the patch embedding, and the heads' last
/// matmul (image against text embeddings, or pre-logits against the classes).
fn forward_flops_without_experts(spec: &ModelSpec, examples: f64) -> f64 {
    let w = spec.width as f64;
    let m = spec.mlp_dim as f64;
    let moe_blocks = spec.active_moe_blocks().len() as f64;
    let dense_blocks = spec.depth as f64 - moe_blocks;
    let per_token = |tokens: f64| {
        let weights = dense_blocks * (4.0 * w * w + 2.0 * w * m)
            + moe_blocks * (4.0 * w * w + w * spec.moe.experts as f64);
        2.0 * weights + spec.depth as f64 * 4.0 * tokens * w
    };
    let (image_tokens, text_tokens) = (spec.patches() as f64, spec.text_tokens() as f64);
    let tokens = examples
        * (image_tokens * (per_token(image_tokens) + 2.0 * spec.patch_dim() as f64 * w)
            + text_tokens * per_token(text_tokens));
    let last = match spec.classifier {
        Some(classifier) => 2.0 * examples * w * classifier.classes as f64,
        None => 2.0 * examples * examples * spec.embed_dim() as f64,
    };
    tokens + last
}

/// Matmul FLOPs of one expert applied to one token: its two layers (width -> mlp -> width).
pub fn expert_flops_per_token(spec: &ModelSpec) -> f64 {
    2.0 * 2.0 * spec.width as f64 * spec.mlp_dim as f64
}

/// Matmul FLOPs of one forward pass over `examples` in which the experts processed
/// `expert_tokens` (token, choice) assignments over all MoE blocks: what an evaluation at a
/// capacity that drops tokens spends. Without drops, `expert_tokens` is K tokens per routed
/// token and block, and the sum is the forward pass [`placed_cost`] counts.
pub fn forward_flops(spec: &ModelSpec, examples: f64, expert_tokens: f64) -> f64 {
    forward_flops_without_experts(spec, examples) + expert_tokens * expert_flops_per_token(spec)
}

/// The (token, choice) assignments the experts process in one forward pass over `examples`
/// when none is dropped: K per routed token and MoE block.
pub fn dropless_expert_tokens(spec: &ModelSpec, examples: f64) -> f64 {
    let tokens = examples * spec.tokens_per_example() as f64;
    tokens * spec.active_moe_blocks().len() as f64 * spec.moe.top_k as f64
}

/// The cost of training the model `spec` describes in one process ([`Placement::SOLO`]), in
/// f32.
pub fn cost(spec: &ModelSpec, batch: usize, micro_batch: usize) -> Cost {
    placed_cost(spec, batch, micro_batch, Placement::SOLO, Precision::F32)
}

/// The cost of training the model `spec` describes with `batch` image-text pairs per step,
/// processed in micro-batches of `micro_batch` pairs (gradient accumulation), each split over
/// the ranks of `placement`, computing in `precision`; memory and communication are per
/// device. Communication is f32 in either precision: gradients are the f32 weights', the
/// embeddings the losses take are f32, and the communicator moves f32.
///
/// Counted in f64, exact below 2^53 and never overflowing: a spec's shape may be far too
/// large to build, and the plan must still say so (the counts saturate when converted).
/// Captions are counted at their full `text_length` (padding is not routed, so routing
/// buffers and activations are upper bounds).
pub fn placed_cost(
    spec: &ModelSpec,
    batch: usize,
    micro_batch: usize,
    placement: Placement,
    precision: Precision,
) -> Cost {
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
    let text_tokens = spec.text_tokens() as f64;
    let per_rank = micro_batch / placement.world.max(1);
    let micro_batches = (batch / micro_batch.max(1)) as f64;
    let (world, expert_parallel) = (placement.world as f64, placement.expert_parallel as f64);
    let (batch, micro_batch) = (batch as f64, micro_batch as f64);

    let moe_block = attention_block(w) + w * experts + experts * mlp(w, m);
    let encoder = dense_blocks * (attention_block(w) + mlp(w, m)) + moe_blocks * moe_block;
    let text_embeddings = match spec.arch.is_classifier() {
        true => 0.0,
        false => spec.vocab_size as f64 * w + text_tokens * w,
    };
    let embeddings = patch_dim * w + w + image_tokens * w + text_embeddings;
    let heads_params = head_params(spec);
    let total_params = towers * encoder + embeddings + heads_params;
    let expert_params = towers * moe_blocks * experts * mlp(w, m);
    let dense_params = total_params - expert_params;

    // One token of one modality meets one encoder's blocks, K experts per MoE block.
    let active_block_moe = attention_block(w) + w * experts + k * mlp(w, m);
    let active_encoder =
        dense_blocks * (attention_block(w) + mlp(w, m)) + moe_blocks * active_block_moe;
    let active_params = active_encoder + embeddings + heads_params;

    // Matmul FLOPs per token and block: 2 x the weights it multiplies, plus attention
    // scores and mixing (2 x 2 x sequence x width); the backward pass costs twice the
    // forward.
    let step_flops = 3.0 * forward_flops(spec, batch, dropless_expert_tokens(spec, batch));

    let held_params = dense_params + expert_params / expert_parallel;
    let weight_bytes = F32 * held_params;
    let (compute_copy_bytes, activation_value) = match precision {
        Precision::F32 => (0.0, F32),
        Precision::Bf16 => (BF16 * held_params, BF16),
    };
    // Kept per token and block: ~10 width-sized tensors (norms, attention in/out, residuals),
    // the MLP hidden activations twice (pre and post GELU, K of them in MoE blocks), and the
    // attention probabilities (heads x sequence). Expert parallelism moves tokens, not their
    // number: a rank's experts process as many rows as its own tokens send out.
    let per_token = |tokens: f64| {
        let hidden = dense_blocks * 2.0 * m + moe_blocks * 2.0 * k * m;
        depth * (10.0 * w + heads * tokens) + hidden
    };
    let activation_bytes = activation_value
        * (micro_batch / world)
        * (image_tokens * per_token(image_tokens) + text_tokens * per_token(text_tokens));

    // With accumulation a caching pass embeds every micro-batch before the training pass
    // (crates/limoe-train/src/trainer.rs).
    let forward_passes = if micro_batches > 1.0 { 2.0 } else { 1.0 };
    let ring_all_reduce = |ranks: f64, bytes: f64| 2.0 * (ranks - 1.0) / ranks * bytes;
    let dispatch_bytes = F32 * w * dispatch_rows(spec, per_rank) as f64;
    let communication = Communication {
        dense_all_reduce: ring_all_reduce(world, F32 * dense_params) as u64,
        expert_all_reduce: ring_all_reduce(
            world / expert_parallel,
            F32 * expert_params / expert_parallel,
        ) as u64,
        all_to_all: (micro_batches
            * moe_blocks
            * 2.0
            * (forward_passes + 1.0)
            * dispatch_bytes
            * (expert_parallel - 1.0)
            / expert_parallel) as u64,
        all_gather: (micro_batches
            * forward_passes
            * 2.0
            * (world - 1.0)
            * F32
            * per_rank as f64
            * spec.embed_dim() as f64) as u64,
    };

    Cost {
        placement,
        total_params: total_params as usize,
        active_params: active_params as usize,
        step_flops,
        weight_bytes: weight_bytes as u64,
        compute_copy_bytes: compute_copy_bytes as u64,
        activation_bytes: activation_bytes as u64,
        communication,
    }
}

/// Bytes per f32.
const F32: f64 = 4.0;
/// Bytes per bf16.
const BF16: f64 = 2.0;

/// Rows of one MoE block's dispatch buffer for one rank's `examples` of a micro-batch: each
/// routing group of whole examples (`moe.group_size`, else all of them) fills `experts`
/// buffers of the capacity its own size gives.
fn dispatch_rows(spec: &ModelSpec, examples: usize) -> usize {
    let moe = &spec.moe;
    let per_example = spec.tokens_per_example();
    let group_rows = |examples: usize| match examples {
        0 => 0,
        _ => {
            let tokens = examples * per_example;
            moe.experts * capacity(tokens, moe.top_k, moe.capacity.train, moe.experts)
        }
    };
    let per_group = moe
        .examples_per_group(per_example)
        .unwrap_or(examples)
        .max(1);
    (examples / per_group) * group_rows(per_group) + group_rows(examples % per_group)
}

#[cfg(test)]
mod tests {
    use limoe_core::spec::{AuxSpec, Capacity, LogitScale, MoeSpec, PerModality, Size};

    use super::*;

    /// The shape of `experiments/l16.yaml`.
    fn l16() -> ModelSpec {
        ModelSpec {
            arch: Arch::Limoe,
            size: Size::L,
            width: 1024,
            depth: 24,
            mlp_dim: 4096,
            heads: 16,
            patch: 16,
            image_size: 224,
            channels: 3,
            text_length: 16,
            vocab_size: 49408,
            embed_dim: None,
            pooling: PerModality::default(),
            moe: MoeSpec {
                experts: 32,
                top_k: 1,
                every: Some(2),
                last: None,
                capacity: Capacity::default(),
                bpr: true,
                noise: 1.0,
                group_size: Some(3392),
            },
            aux: AuxSpec::default(),
            logit_scale: LogitScale::default(),
            classifier: None,
        }
    }

    fn placed(world: usize, expert_parallel: usize) -> Cost {
        let placement = Placement {
            world,
            expert_parallel,
        };
        placed_cost(&l16(), 16384, 1024, placement, Precision::F32)
    }

    #[test]
    fn bf16_adds_a_weight_copy_and_halves_the_activations() {
        let placement = Placement {
            world: 64,
            expert_parallel: 32,
        };
        let f32 = placed(64, 32);
        let bf16 = placed_cost(&l16(), 16384, 1024, placement, Precision::Bf16);
        assert_eq!(f32.compute_copy_bytes, 0);
        assert_eq!(bf16.compute_copy_bytes, f32.weight_bytes / 2);
        assert_eq!(bf16.state_bytes(), f32.state_bytes());
        assert_eq!(bf16.activation_bytes, f32.activation_bytes / 2);
        assert_eq!(
            bf16.training_bytes(),
            f32.state_bytes() + f32.weight_bytes / 2 + f32.activation_bytes / 2
        );
        assert_eq!(bf16.communication, f32.communication);
    }

    #[test]
    fn one_process_is_the_solo_placement_with_the_numbers_of_before() {
        let solo = cost(&l16(), 16384, 1024);
        assert_eq!(solo, placed(1, 1));
        // The numbers `limoe plan experiments/l16.yaml` printed before placements existed.
        assert_eq!(solo.total_params, 3_478_868_993);
        assert_eq!(solo.active_params, 356_402_177);
        assert_eq!(solo.step_flops, 6_505_458_114_232_320.0);
        assert_eq!(solo.state_bytes(), 55_661_903_888);
        assert_eq!(solo.activation_bytes, 444_956_934_144);
        assert_eq!(solo.communication, Communication::default());
    }

    #[test]
    fn experts_shard_over_the_expert_parallel_group_and_dense_weights_do_not() {
        // 12 MoE blocks of 32 expert MLPs (1024 -> 4096 -> 1024, with biases), in f32.
        let expert_bytes: u64 = 12 * 32 * (1024 * 4096 + 4096 + 4096 * 1024 + 1024) * 4;
        let one_copy = placed(32, 1);
        let dense_bytes = one_copy.weight_bytes - expert_bytes;
        for expert_parallel in [2, 32] {
            let sharded = placed(32, expert_parallel);
            let shard = expert_bytes / expert_parallel as u64;
            assert_eq!(sharded.weight_bytes, dense_bytes + shard);
            assert_eq!(sharded.activation_bytes, one_copy.activation_bytes);
            let (one, all) = (one_copy.communication, sharded.communication);
            assert_eq!(all.dense_all_reduce, one.dense_all_reduce);
            // A ring over the 32 / P ranks holding the same experts.
            let replicas = (32 / expert_parallel) as f64;
            let ring = 2.0 * (replicas - 1.0) / replicas * shard as f64;
            assert_eq!(all.expert_all_reduce, ring as u64);
        }
        assert_eq!(placed(32, 32).communication.expert_all_reduce, 0);
    }

    #[test]
    fn activations_shrink_with_the_world_and_weights_do_not() {
        let solo = placed(1, 1);
        for world in [2, 16, 64] {
            let spread = placed(world, 1);
            assert_eq!(
                spread.activation_bytes * world as u64,
                solo.activation_bytes
            );
            assert_eq!(spread.weight_bytes, solo.weight_bytes);
        }
    }

    #[test]
    fn all_to_all_moves_only_tokens_bound_for_other_ranks() {
        assert_eq!(placed(64, 1).communication.all_to_all, 0);
        // A hand-sized case: one MoE block of 4 experts, top-2, width 8; 4 ranks in 2 groups
        // of 2. Each rank routes 4 of the 16-pair micro-batch in groups of 2 examples of
        // 4 patches + 4 text tokens: capacity ceil(2 * 16 * 1.0 / 4) = 8, so 4 x 8 rows of 8
        // f32 per group (1024 bytes) and 2 groups (2048 bytes). Two micro-batches: the caching
        // and the training forward pass each dispatch and return, the backward pass once
        // more: 6 transfers of which half leave the rank, per micro-batch.
        let spec = ModelSpec {
            width: 8,
            depth: 2,
            mlp_dim: 16,
            heads: 2,
            patch: 4,
            image_size: 8,
            text_length: 4,
            vocab_size: 64,
            embed_dim: Some(4),
            moe: MoeSpec {
                experts: 4,
                top_k: 2,
                group_size: Some(16),
                ..l16().moe
            },
            ..l16()
        };
        let placement = Placement {
            world: 4,
            expert_parallel: 2,
        };
        let comm = placed_cost(&spec, 32, 16, placement, Precision::F32).communication;
        assert_eq!(comm.all_to_all, 2 * 6 * 2048 / 2);
        // Both embeddings (4 rows of 4 f32) to the 3 other ranks, in both forward passes.
        assert_eq!(comm.all_gather, 2 * 2 * 2 * 3 * 4 * 4 * 4);
    }
}
