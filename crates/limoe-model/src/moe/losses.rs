//! The auxiliary losses of one routing call: on the CPU computed on the host in f64
//! ([`HostAux`], one autograd node), elsewhere as device tensors ([`super::aux`]).

use std::sync::Arc;

use candle_core::{Result, Tensor};

use super::aux::{
    Aux, AuxTerms, GroupIndex, LossTerms, PerModality, RouterRows, joint_balance, modality_terms,
};
use super::config::{MoeConfig, RoutedTokens};
use super::groups::RowGroups;
use super::host_aux::{HostAux, HostRouter, RowSet};
use super::stats::Entropies;

/// What the auxiliary losses of one routing call read.
pub(super) struct RouterCall<'a> {
    /// [T, E] clean router logits, their log-softmax and softmax.
    pub logits: &'a Tensor,
    pub log_probs: &'a Tensor,
    pub probs: &'a Tensor,
    /// The router noise drawn (T * E values, row-major) and its std, when training with noise.
    pub noise: Option<(&'a [f64], f64)>,
    /// [T, E] the noisy logits the routing picked on, with `noise`.
    pub noisy: Option<&'a Tensor>,
    /// [T, 1] u32: each token's K-th choice.
    pub kth: &'a Tensor,
    pub routed: &'a RoutedTokens,
}

/// The unweighted terms (for the logs), their weighted sum (the loss) and the entropies the
/// routing statistics report.
pub(super) struct AuxLosses {
    pub terms: AuxTerms,
    pub loss: Tensor,
    pub entropies: Entropies,
}

impl RouterCall<'_> {
    /// On the host: a few hundred small tensor ops per block become one pass over the logits.
    pub fn on_host(&self, cfg: &MoeConfig) -> Result<AuxLosses> {
        let t = self.routed.counts.total();
        let kth = self.kth.flatten_all()?.to_vec1::<u32>()?;
        let router = HostRouter::new(self.logits, self.noise, &kth)?;
        let [image, text] = self.routed.counts.ranges();
        let rows = [
            (image, &self.routed.row_groups[0]),
            (text, &self.routed.row_groups[1]),
            ((0, t), &self.routed.joint_groups),
        ]
        .map(|((start, len), groups)| RowSet {
            start,
            len,
            groups: groups.clone(),
        });
        let global = cfg.global_experts.named().map(|(_, strength)| strength);
        let aux = Arc::new(HostAux::new(router, rows, global, &cfg.aux));
        Ok(AuxLosses {
            terms: AuxTerms::Host(aux.clone()),
            loss: aux.loss(self.logits)?,
            entropies: Entropies::Host(aux),
        })
    }

    /// As device tensors, differentiated by candle's autograd.
    pub fn as_tensors(&self, cfg: &MoeConfig) -> Result<AuxLosses> {
        let x = self.logits;
        // Noisy logit of each token's K-th choice: the bar the load loss measures against.
        let threshold = match (self.noisy, self.noise) {
            (Some(noisy), Some((_, std))) => Some((noisy.gather(self.kth, 1)?, std)),
            _ => None,
        };
        let zero = Tensor::zeros((), x.dtype(), x.device())?;
        // The router quantities of rows start..start + n, grouped as `groups` says.
        let rows_of = |start: usize, n: usize, groups: &Option<RowGroups>| -> Result<RouterRows> {
            Ok(RouterRows {
                logits: self.logits.narrow(0, start, n)?,
                log_probs: self.log_probs.narrow(0, start, n)?,
                probs: self.probs.narrow(0, start, n)?,
                threshold: match &threshold {
                    Some((th, std)) => Some((th.narrow(0, start, n)?, *std)),
                    None => None,
                },
                groups: match groups {
                    Some(groups) => Some(GroupIndex::upload(groups, x)?),
                    None => None,
                },
            })
        };
        let modality = |m: usize| -> Result<(LossTerms<Tensor>, Tensor)> {
            let (start, n) = self.routed.counts.ranges()[m];
            let rows = match n {
                0 => None,
                _ => Some(rows_of(start, n, &self.routed.row_groups[m])?),
            };
            modality_terms(rows, cfg.global_experts.named()[m].1, &zero)
        };
        let (image, image_mean_entropy) = modality(0)?;
        let (text, text_mean_entropy) = modality(1)?;
        let t = self.routed.counts.total();
        let joint = joint_balance(&rows_of(0, t, &self.routed.joint_groups)?, &zero)?;
        let entropies = Entropies::Tensors([
            (image.local_entropy.clone(), image_mean_entropy),
            (text.local_entropy.clone(), text_mean_entropy),
        ]);
        let aux = Aux {
            modality: PerModality { image, text },
            joint,
        };
        Ok(AuxLosses {
            loss: aux.weighted(&cfg.aux)?,
            terms: AuxTerms::Tensors(aux),
            entropies,
        })
    }
}
