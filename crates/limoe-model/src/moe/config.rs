//! Plain configuration of one MoE layer, the routing mode and the token split of a batch.

use candle_core::{Result, bail};

/// Hyper-parameters of one MoE layer.
#[derive(Debug, Clone, PartialEq)]
pub struct MoeConfig {
    /// Model width (input and output features of every expert).
    pub width: usize,
    /// Hidden width of each expert MLP.
    pub mlp_dim: usize,
    /// Number of experts E.
    pub experts: usize,
    /// Experts chosen per token K (1 <= K <= E).
    pub top_k: usize,
    /// Capacity factor c during training: C = ceil(group_tokens * K * c / E).
    pub capacity_train: f64,
    /// Capacity factor c during evaluation; `None` drops no token (C = group tokens).
    pub capacity_eval: Option<f64>,
    /// Batch Priority Routing: fill expert buffers by descending top-1 gate (else token order).
    pub bpr: bool,
    /// Router noise scale: training adds N(0, (noise / E)^2) to the logits before top-K.
    pub noise: f64,
    /// Tokens per routing group (`None`: the whole batch is one group).
    pub group_size: Option<usize>,
    /// S_m of the global entropy loss per modality, `[image, text]`: the loss is
    /// `max(0, ln S_m - H(mean p))`, so it asks for at least S_m experts in use.
    pub global_experts: [f64; 2],
}

impl MoeConfig {
    /// Checks that every field is in range.
    pub fn validate(&self) -> Result<()> {
        if self.width == 0 || self.mlp_dim == 0 {
            bail!("moe: width and mlp_dim must be positive");
        }
        if self.experts == 0 {
            bail!("moe: experts must be positive");
        }
        if self.top_k == 0 || self.top_k > self.experts {
            bail!(
                "moe: top_k must be in 1..={} (the number of experts), got {}",
                self.experts,
                self.top_k
            );
        }
        let factors = [("capacity_train", Some(self.capacity_train))]
            .into_iter()
            .chain([("capacity_eval", self.capacity_eval)]);
        for (name, c) in factors.filter_map(|(name, c)| Some((name, c?))) {
            if !(c.is_finite() && c > 0.0) {
                bail!("moe: {name} must be a positive number, got {c}");
            }
        }
        if !(self.noise.is_finite() && self.noise >= 0.0) {
            bail!(
                "moe: noise must be a non-negative number, got {}",
                self.noise
            );
        }
        if self.group_size == Some(0) {
            bail!("moe: group_size must be positive");
        }
        if self
            .global_experts
            .iter()
            .any(|s| !(s.is_finite() && *s >= 1.0))
        {
            bail!(
                "moe: global_experts must be numbers >= 1, got {:?}",
                self.global_experts
            );
        }
        Ok(())
    }
}

/// How a forward pass routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteMode {
    /// Training: noisy top-K with the noise keyed by `noise_seed` (use a different seed per
    /// step and layer), training capacity.
    Train {
        /// Key of the router noise; the same seed reproduces the same noise.
        noise_seed: u64,
    },
    /// Evaluation: deterministic top-K on the clean logits, evaluation capacity.
    Eval,
}

/// Number of tokens of each modality in a routing batch (image tokens come first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenCounts {
    /// Image tokens (rows `0..image`).
    pub image: usize,
    /// Text tokens (rows `image..image + text`).
    pub text: usize,
}

impl TokenCounts {
    /// All tokens.
    pub fn total(&self) -> usize {
        self.image + self.text
    }

    /// `(first row, rows)` of each modality, `[image, text]`.
    pub fn ranges(&self) -> [(usize, usize); 2] {
        [(0, self.image), (self.image, self.text)]
    }
}
