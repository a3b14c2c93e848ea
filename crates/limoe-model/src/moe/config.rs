//! Configuration of one MoE layer, the routing mode and the tokens of a routing call.

use candle_core::Result;
use limoe_core::spec::{self, ModelSpec, MoeSpec};

use super::aux::{AuxWeights, aux_weights};
use super::groups::{Groups, RowGroups};

/// One MoE layer: its sizes and the spec's `model.moe` routing section.
#[derive(Debug, Clone, PartialEq)]
pub struct MoeConfig {
    /// Model width (input and output features of every expert).
    pub width: usize,
    /// Hidden width of each expert MLP.
    pub mlp_dim: usize,
    /// Experts, top-K, capacity, BPR, noise and group size, as the spec writes them.
    pub routing: MoeSpec,
    /// S_m of the global entropy loss per modality: the loss is `max(0, ln S_m - H(mean p))`,
    /// so it asks for at least S_m experts in use.
    pub global_experts: spec::PerModality<f64>,
    /// The weight of each auxiliary loss in the layer's `aux_loss`.
    pub aux: AuxWeights,
}

impl MoeConfig {
    /// The layer a model spec describes (every MoE block of a model has the same).
    pub fn of(model: &ModelSpec) -> MoeConfig {
        MoeConfig {
            width: model.width,
            mlp_dim: model.mlp_dim,
            routing: model.moe.clone(),
            global_experts: model.aux.global_experts,
            aux: aux_weights(&model.aux),
        }
    }

    /// Checks the routing with the spec's own rules (`MoeSpec::validate`).
    pub fn validate(&self) -> Result<()> {
        self.routing.validate().map_err(candle_core::Error::msg)
    }
}

/// How a forward pass routes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RouteMode {
    /// Training: noisy top-K with the noise keyed by `noise_seed` (use a different seed per
    /// step and layer), training capacity.
    Train {
        /// Key of the router noise; the same seed reproduces the same noise.
        noise_seed: u64,
        /// Index of the batch's first example in the whole (global) batch: a token's noise
        /// depends on its example's global index, not on how the batch is split over ranks.
        first_example: u64,
    },
    /// Evaluation: deterministic top-K on the clean logits, evaluation capacity.
    Eval,
    /// Evaluation at an inference capacity of its own (V-MoE's capacity curves):
    /// deterministic top-K, the capacity factor and BPR given here instead of the spec's.
    Capped {
        /// Capacity factor c of every MoE block.
        capacity_factor: f64,
        /// Batch Priority Routing: fill the buffers by descending top-1 gate, so that the
        /// tokens dropped are the least confident ones.
        bpr: bool,
    },
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

/// The tokens of one routing call, image rows first, then text rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutedTokens {
    /// How many rows of each modality.
    pub counts: TokenCounts,
    /// Which rows compete for the same capacity.
    pub groups: Groups,
    /// Key of each row's router noise in training.
    pub noise_keys: Vec<u64>,
    /// Each modality's rows by group, `[image, text]` (`None`: all in one group).
    pub(crate) row_groups: [Option<RowGroups>; 2],
    /// All rows by group, for the joint balancing losses (`None`: all in one group).
    pub(crate) joint_groups: Option<RowGroups>,
}

impl RoutedTokens {
    /// `counts` rows routed in `groups`, noise keyed by `noise_keys` (one per row).
    pub fn new(counts: TokenCounts, groups: Groups, noise_keys: Vec<u64>) -> Result<RoutedTokens> {
        if groups.tokens() != counts.total() || noise_keys.len() != counts.total() {
            candle_core::bail!(
                "routed tokens: {} rows, but groups of {} and {} noise keys",
                counts.total(),
                groups.tokens(),
                noise_keys.len()
            );
        }
        let row_groups = counts
            .ranges()
            .map(|(start, n)| groups.of_rows(start..start + n));
        let joint_groups = groups.of_rows(0..counts.total());
        Ok(RoutedTokens {
            counts,
            groups,
            noise_keys,
            row_groups,
            joint_groups,
        })
    }

    /// Rows routed in consecutive groups of `group_size` (one group when `None`), their noise
    /// keyed by row: one layer used on its own.
    pub fn consecutive(counts: TokenCounts, group_size: Option<usize>) -> Result<RoutedTokens> {
        let rows = counts.total();
        RoutedTokens::new(
            counts,
            Groups::consecutive(rows, group_size)?,
            (0..rows as u64).collect(),
        )
    }
}
