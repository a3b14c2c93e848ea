//! The LIMoE model on candle: per-modality embeddings, one encoder shared by image patches
//! and text tokens whose MLPs are sparse mixtures of experts (or the dense and two-tower
//! baselines), pooling heads and the contrastive loss; and V-MoE, the image classifier of the
//! same blocks (`arch: vmoe`, its dense twin `vit`).
//!
//! The crate reads no files: the spec's `model` section ([`limoe_core::spec::ModelSpec`], checked
//! by the spec's own rules) fixes the shape, [`Params`] holds the seeded
//! weights, and [`Model::forward`] returns the loss terms with the routing reports.

mod attention;
pub mod classify;
pub mod contrastive;
pub mod device;
mod embed;
pub mod encoder;
mod heads;
pub mod inputs;
mod layers;
pub mod model;
pub mod moe;
pub mod params;
pub mod plan;
pub mod random;

pub use inputs::{Images, TextMask, Texts};
pub use model::{
    CLASSIFIER_LOGITS, Encoded, InPrecision, LOG_LOGIT_SCALE, Model, Negatives, Output,
    is_classifier_logits,
};
pub use params::Params;
