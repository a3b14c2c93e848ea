//! Routing statistics, kept on the device until asked for.

use candle_core::{DType, Result, Tensor};

use super::aux::PerModality;
use super::config::TokenCounts;

/// Routing statistics of one forward pass. Holds device tensors; [`RoutingStats::to_host`]
/// computes the numbers (and syncs) only when called.
#[derive(Debug, Clone)]
pub struct RoutingStats {
    /// [T, K] u32 expert per (token, choice), E = dropped.
    experts: Tensor,
    /// [T, E] clean gates (detached).
    probs: Tensor,
    tokens: TokenCounts,
    /// Per modality: (mean router entropy, entropy of the mean gate), detached scalars.
    entropies: [(Tensor, Tensor); 2],
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
        entropies: [(Tensor, Tensor); 2],
    ) -> RoutingStats {
        RoutingStats {
            experts,
            probs: probs.detach(),
            tokens,
            entropies: entropies.map(|(l, g)| (l.detach(), g.detach())),
        }
    }

    /// Computes the statistics per modality on the host (copies the [T, K] assignments).
    pub fn to_host(&self) -> Result<PerModality<ModalityStats>> {
        let num_experts = self.probs.dim(1)?;
        let assigned = self.experts.to_vec2::<u32>()?;
        let scalar = |t: &Tensor| t.to_dtype(DType::F64)?.to_scalar::<f64>();
        let modality = |m: usize| -> Result<ModalityStats> {
            let (start, n) = self.tokens.ranges()[m];
            let (local, global) = &self.entropies[m];
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
                local_entropy: scalar(local)?,
                global_entropy: scalar(global)?,
            })
        };
        Ok(PerModality {
            image: modality(0)?,
            text: modality(1)?,
        })
    }
}
