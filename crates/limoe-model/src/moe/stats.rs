//! Routing statistics, kept on the device until asked for.

use candle_core::{DType, Result, Tensor};

use std::sync::Arc;

use super::aux::PerModality;
use super::config::TokenCounts;
use super::host_aux::HostAux;

/// Routing statistics of one forward pass. Holds device tensors; [`RoutingStats::to_host`]
/// computes the numbers (and syncs) only when called.
#[derive(Debug, Clone)]
pub struct RoutingStats {
    /// [T, K] u32 expert per (token, choice), E = dropped.
    experts: Tensor,
    /// [T, E] clean gates (detached).
    probs: Tensor,
    tokens: TokenCounts,
    entropies: Entropies,
}

/// Per modality: the mean router entropy and the entropy of the mean gate.
#[derive(Debug, Clone)]
pub(crate) enum Entropies {
    /// Detached scalars on the device.
    Tensors([(Tensor, Tensor); 2]),
    /// The host's auxiliary terms, which compute them.
    Host(Arc<HostAux>),
}

impl Entropies {
    /// `[(local, global)]` per modality.
    fn values(&self) -> Result<[(f64, f64); 2]> {
        let scalar = |t: &Tensor| t.to_dtype(DType::F64)?.to_scalar::<f64>();
        match self {
            Entropies::Tensors([image, text]) => Ok([
                (scalar(&image.0)?, scalar(&image.1)?),
                (scalar(&text.0)?, scalar(&text.1)?),
            ]),
            Entropies::Host(aux) => {
                let values = aux.values();
                let local = values.terms.modality.both().map(|t| t.local_entropy);
                Ok([0, 1].map(|m| (local[m], values.mean_entropy[m])))
            }
        }
    }
}

/// The routing numbers of one modality.
#[derive(Debug, Clone, PartialEq)]
pub struct ModalityStats {
    /// Tokens routed to (kept by) each expert, counting every kept choice.
    pub routed: Vec<u64>,
    /// (token, choice) assignments dropped for lack of capacity.
    pub dropped: u64,
    /// Mean over the modality's tokens of the clean gate p(e|x), per expert.
    pub mean_gate: Vec<f64>,
    /// Mean over tokens of the router entropy H(p(.|x)).
    pub local_entropy: f64,
    /// Entropy of the mean gate H(mean_i p(.|x_i)).
    pub global_entropy: f64,
}

impl RoutingStats {
    pub(crate) fn new(
        experts: Tensor,
        probs: Tensor,
        tokens: TokenCounts,
        entropies: Entropies,
    ) -> RoutingStats {
        let entropies = match entropies {
            Entropies::Tensors(pairs) => {
                Entropies::Tensors(pairs.map(|(l, g)| (l.detach(), g.detach())))
            }
            host => host,
        };
        RoutingStats {
            experts,
            probs: probs.detach(),
            tokens,
            entropies,
        }
    }

    /// Computes the statistics per modality on the host (copies the [T, K] assignments).
    pub fn to_host(&self) -> Result<PerModality<ModalityStats>> {
        let num_experts = self.probs.dim(1)?;
        let assigned = self.experts.to_vec2::<u32>()?;
        let entropies = self.entropies.values()?;
        let modality = |m: usize| -> Result<ModalityStats> {
            let (start, n) = self.tokens.ranges()[m];
            let (local_entropy, global_entropy) = entropies[m];
            let mut routed = vec![0u64; num_experts];
            let mut dropped = 0;
            for &e in assigned[start..start + n].iter().flatten() {
                match routed.get_mut(e as usize) {
                    Some(count) => *count += 1,
                    None => dropped += 1,
                }
            }
            let mean_gate = if n == 0 {
                vec![0.0; num_experts]
            } else {
                self.probs
                    .narrow(0, start, n)?
                    .mean(0)?
                    .to_dtype(DType::F64)?
                    .to_vec1()?
            };
            Ok(ModalityStats {
                routed,
                dropped,
                mean_gate,
                local_entropy,
                global_entropy,
            })
        };
        Ok(PerModality {
            image: modality(0)?,
            text: modality(1)?,
        })
    }
}
