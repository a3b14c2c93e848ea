//! The `model.aux` section: the weights of the auxiliary router losses, and which tokens the
//! V-MoE balancing losses are computed over.

use serde::{Deserialize, Serialize};

use super::model::PerModality;

/// Weights of the auxiliary losses (0 switches a loss off).
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuxSpec {
    /// Local entropy (mean per-token router entropy), per modality.
    pub local_entropy: PerModality<f64>,
    /// Thresholded global entropy, per modality.
    pub global_entropy: PerModality<f64>,
    /// S_m of the global entropy threshold log(S_m): at least this many experts per modality.
    pub global_experts: PerModality<f64>,
    /// V-MoE importance loss (CV^2 of summed gates).
    pub importance: f64,
    /// V-MoE load loss (CV^2 of the noisy load estimate).
    pub load: f64,
    /// Router z-loss.
    pub z_loss: f64,
    /// Which tokens the importance and load losses balance. Left out of the written spec at
    /// its default, so that specs written before it keep their cache keys.
    #[serde(skip_serializing_if = "BalanceScopes::is_default")]
    pub scope: BalanceScopes,
}

impl Default for AuxSpec {
    /// The LIMoE recipe: local and global entropy on both modalities.
    fn default() -> AuxSpec {
        AuxSpec {
            local_entropy: PerModality::both(0.01),
            global_entropy: PerModality::both(0.01),
            global_experts: PerModality::both(2.0),
            importance: 0.0,
            load: 0.0,
            z_loss: 0.0,
            scope: BalanceScopes::default(),
        }
    }
}

/// The tokens a V-MoE balancing loss is computed over, within each routing group.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Each modality's tokens apart, each with the loss's weight.
    #[default]
    PerModality,
    /// All routed tokens together, whatever their modality, as V-MoE computes them: the
    /// LIMoE paper's argument is that the majority modality can satisfy such a loss while
    /// the minority one collapses.
    Joint,
}

/// The scope of each V-MoE balancing loss.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct BalanceScopes {
    /// Scope of the importance loss.
    pub importance: Scope,
    /// Scope of the load loss.
    pub load: Scope,
}

impl BalanceScopes {
    fn is_default(&self) -> bool {
        self == &BalanceScopes::default()
    }
}
