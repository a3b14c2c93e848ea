//! What a sweep setting trained, read from its spec: the claims find the settings they
//! compare by what they are (the LIMoE recipe, the dense baseline, ...), not by their names.

use limoe_core::spec::{Arch, ModelSpec, Scope};
use serde::{Deserialize, Serialize};

/// The facts of a model spec the paper's claims turn on.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recipe {
    /// The network.
    pub arch: Arch,
    /// The local entropy loss weighs on both modalities.
    pub local_entropy: bool,
    /// The global entropy loss weighs on both modalities.
    pub global_entropy: bool,
    /// The importance loss's scope, when V-MoE's importance or load loss has a weight.
    pub balance: Option<Scope>,
    /// Training capacity factor.
    pub capacity: f64,
    /// Batch Priority Routing.
    pub bpr: bool,
}

impl Recipe {
    /// The recipe of `model`.
    pub fn of(model: &ModelSpec) -> Recipe {
        let aux = &model.aux;
        let both = |w: limoe_core::spec::PerModality<f64>| w.image > 0.0 && w.text > 0.0;
        let balanced = aux.importance > 0.0 || aux.load > 0.0;
        Recipe {
            arch: model.arch,
            local_entropy: both(aux.local_entropy),
            global_entropy: both(aux.global_entropy),
            balance: balanced.then_some(if aux.importance > 0.0 {
                aux.scope.importance
            } else {
                aux.scope.load
            }),
            capacity: model.moe.capacity.train,
            bpr: model.moe.bpr,
        }
    }

    /// The LIMoE recipe: an MoE model with both entropy losses and no V-MoE balancing.
    pub fn is_limoe(&self) -> bool {
        self.arch == Arch::Limoe
            && self.local_entropy
            && self.global_entropy
            && self.balance.is_none()
    }

    /// An MoE model with no entropy loss, balanced as `balance` says (`None`: no auxiliary
    /// loss at all).
    pub fn is_without_entropy(&self, balance: Option<Scope>) -> bool {
        self.arch == Arch::Limoe
            && !self.local_entropy
            && !self.global_entropy
            && self.balance == balance
    }
}
