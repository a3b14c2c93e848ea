//! Auxiliary router losses: local and global entropy (LIMoE), V-MoE importance and load
//! losses, router z-loss.
//!
//! Every term is computed over one modality's tokens of each routing group and averaged over
//! the groups (as V-MoE computes its losses per group), and each can carry its own weight per
//! modality. The importance and load losses are also computed over all of a group's tokens
//! together (`model.aux.scope: joint`, V-MoE's own reading). A group then contributes the same
//! whatever else is in the batch, so that ranks holding whole groups sum to one process's
//! losses.

use std::sync::Arc;

use candle_core::{D, DType, Result, Tensor};
use limoe_core::spec::{AuxSpec, Scope};

use super::groups::RowGroups;
use super::host_aux::HostAux;

/// One value per auxiliary loss.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LossTerms<T> {
    /// Mean over tokens of the router entropy H(p(.|x)).
    pub local_entropy: T,
    /// `max(0, ln S_m - H(mean_i p(.|x_i)))`.
    pub global_entropy: T,
    /// V-MoE importance loss: CV^2 over experts of the summed clean gates.
    pub importance: T,
    /// V-MoE load loss: CV^2 over experts of the mean probability of selection under the
    /// noise (zero in evaluation or without noise).
    pub load: T,
    /// Router z-loss: mean over tokens of logsumexp(logits)^2.
    pub z_loss: T,
}

impl<T> LossTerms<T> {
    /// `(name, value)` of every term, in declaration order.
    pub fn entries(&self) -> [(&'static str, &T); 5] {
        [
            ("local_entropy", &self.local_entropy),
            ("global_entropy", &self.global_entropy),
            ("importance", &self.importance),
            ("load", &self.load),
            ("z_loss", &self.z_loss),
        ]
    }
}

/// The V-MoE balancing losses.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Balance<T> {
    /// Importance loss.
    pub importance: T,
    /// Load loss.
    pub load: T,
}

impl<T> Balance<T> {
    /// `(name, value)` of both terms.
    pub fn entries(&self) -> [(&'static str, &T); 2] {
        [("importance", &self.importance), ("load", &self.load)]
    }
}

/// A value for each modality.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PerModality<T> {
    /// Image tokens.
    pub image: T,
    /// Text tokens.
    pub text: T,
}

impl<T> PerModality<T> {
    /// `[image, text]`.
    pub fn both(&self) -> [&T; 2] {
        [&self.image, &self.text]
    }
}

/// Every auxiliary term of one MoE layer: each modality's, and the balancing losses over both
/// modalities' tokens together.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Aux<T> {
    /// Each modality's terms.
    pub modality: PerModality<LossTerms<T>>,
    /// Importance and load over all tokens.
    pub joint: Balance<T>,
}

impl<T> Aux<T> {
    /// Every value through `f`, in the same places.
    pub fn try_map<U>(&self, f: impl Fn(&T) -> Result<U>) -> Result<Aux<U>> {
        let terms = |t: &LossTerms<T>| -> Result<LossTerms<U>> {
            Ok(LossTerms {
                local_entropy: f(&t.local_entropy)?,
                global_entropy: f(&t.global_entropy)?,
                importance: f(&t.importance)?,
                load: f(&t.load)?,
                z_loss: f(&t.z_loss)?,
            })
        };
        Ok(Aux {
            modality: PerModality {
                image: terms(&self.modality.image)?,
                text: terms(&self.modality.text)?,
            },
            joint: Balance {
                importance: f(&self.joint.importance)?,
                load: f(&self.joint.load)?,
            },
        })
    }

    /// Every value: image's terms, text's, in [`LossTerms::entries`] order, then the joint
    /// importance and load.
    pub fn values_mut(&mut self) -> [&mut T; 12] {
        let [image, text] = [&mut self.modality.image, &mut self.modality.text].map(|t| {
            let LossTerms {
                local_entropy,
                global_entropy,
                importance,
                load,
                z_loss,
            } = t;
            [local_entropy, global_entropy, importance, load, z_loss]
        });
        let [i0, i1, i2, i3, i4] = image;
        let [t0, t1, t2, t3, t4] = text;
        let Balance { importance, load } = &mut self.joint;
        [i0, i1, i2, i3, i4, t0, t1, t2, t3, t4, importance, load]
    }
}

/// The unweighted auxiliary terms of one MoE layer, as the logs read them.
#[derive(Debug, Clone)]
pub enum AuxTerms {
    /// Scalar tensors on the device (the GPU's path).
    Tensors(Aux<Tensor>),
    /// Values the host computes when first asked for (the CPU's path).
    Host(Arc<HostAux>),
}

impl AuxTerms {
    /// Every term's value (a device sync, or the host's loops the first time).
    pub fn to_host(&self) -> Result<AuxValues> {
        match self {
            AuxTerms::Tensors(terms) => terms.to_host(),
            AuxTerms::Host(aux) => Ok(aux.values().terms.clone()),
        }
    }
}
/// The weight of each auxiliary loss (0 leaves a term out).
pub type AuxWeights = Aux<f64>;
/// Auxiliary loss values copied to the host.
pub type AuxValues = Aux<f64>;

/// The weights a spec's `model.aux` section gives: the entropy losses have a weight per
/// modality, the z-loss one for both, and the V-MoE losses one for both modalities or one
/// for all tokens together, as `scope` says.
pub fn aux_weights(aux: &AuxSpec) -> AuxWeights {
    let scoped = |weight: f64, scope: Scope, wanted: Scope| {
        if scope == wanted { weight } else { 0.0 }
    };
    let balance = |wanted| Balance {
        importance: scoped(aux.importance, aux.scope.importance, wanted),
        load: scoped(aux.load, aux.scope.load, wanted),
    };
    let per_modality = balance(Scope::PerModality);
    let terms = |local_entropy, global_entropy| LossTerms {
        local_entropy,
        global_entropy,
        importance: per_modality.importance,
        load: per_modality.load,
        z_loss: aux.z_loss,
    };
    Aux {
        modality: PerModality {
            image: terms(aux.local_entropy.image, aux.global_entropy.image),
            text: terms(aux.local_entropy.text, aux.global_entropy.text),
        },
        joint: balance(Scope::Joint),
    }
}

impl AuxValues {
    /// `sum_term weight * term` over both modalities' terms and the joint ones.
    pub fn weighted_total(&self, weights: &AuxWeights) -> f64 {
        let modality = (self.modality.both().into_iter()).zip(weights.modality.both());
        let per_modality: f64 = modality
            .flat_map(|(t, w)| t.entries().into_iter().zip(w.entries()))
            .map(|((_, v), (_, w))| v * w)
            .sum();
        per_modality
            + self.joint.importance * weights.joint.importance
            + self.joint.load * weights.joint.load
    }
}

impl Aux<Tensor> {
    /// `sum_term weight * term` over both modalities' terms and the joint ones, a scalar
    /// tensor; terms with weight 0 are skipped.
    pub fn weighted(&self, weights: &AuxWeights) -> Result<Tensor> {
        let modality = self
            .modality
            .both()
            .into_iter()
            .zip(weights.modality.both());
        let pairs = modality
            .flat_map(|(terms, w)| terms.entries().into_iter().zip(w.entries()))
            .chain(
                self.joint
                    .entries()
                    .into_iter()
                    .zip(weights.joint.entries()),
            );
        let mut total = self.joint.importance.zeros_like()?;
        for ((_, term), (_, weight)) in pairs {
            if *weight != 0.0 {
                total = (total + term.affine(*weight, 0.0)?)?;
            }
        }
        Ok(total)
    }

    /// Copies every term to the host (a device sync).
    pub fn to_host(&self) -> Result<AuxValues> {
        self.try_map(|x| x.to_dtype(DType::F64)?.to_scalar::<f64>())
    }
}

/// The router quantities of some of the batch's tokens (one modality's, or all).
pub(crate) struct RouterRows {
    /// [n, E] router logits.
    pub logits: Tensor,
    /// [n, E] log p(e|x).
    pub log_probs: Tensor,
    /// [n, E] p(e|x).
    pub probs: Tensor,
    /// Training noise: `([n, 1] noisy logit of each token's K-th choice, noise std)`.
    pub threshold: Option<(Tensor, f64)>,
    /// The routing group of each row, when there are several.
    pub groups: Option<GroupIndex>,
}

/// [`RowGroups`] on the device.
pub(crate) struct GroupIndex {
    /// [n] u32: the group of each row.
    index: Tensor,
    /// [G, 1]: rows per group, in the rows' dtype.
    sizes: Tensor,
}

impl GroupIndex {
    /// Uploads `groups` next to `like` (its device and dtype).
    pub fn upload(groups: &RowGroups, like: &Tensor) -> Result<GroupIndex> {
        let sizes: Vec<f64> = groups.sizes.iter().map(|&n| n as f64).collect();
        Ok(GroupIndex {
            index: Tensor::from_slice(&groups.index, groups.index.len(), like.device())?,
            sizes: Tensor::from_vec(sizes, (groups.sizes.len(), 1), like.device())?
                .to_dtype(like.dtype())?,
        })
    }
}

/// [G, D] the mean of `x` [n, D] over each group's rows (one group: [1, D]); a scatter-add,
/// so its gradient reaches every row.
fn group_mean(x: &Tensor, groups: Option<&GroupIndex>) -> Result<Tensor> {
    match groups {
        None => x.mean_keepdim(0),
        Some(g) => {
            let (count, width) = (g.sizes.dim(0)?, x.dim(1)?);
            Tensor::zeros((count, width), x.dtype(), x.device())?
                .index_add(&g.index, x, 0)?
                .broadcast_div(&g.sizes)
        }
    }
}

/// The loss terms of one modality and the entropy of its mean gate H(mean p) (for the
/// statistics). `rows == None` (no tokens) gives zeros.
pub(crate) fn modality_terms(
    rows: Option<RouterRows>,
    global_experts: f64,
    zero: &Tensor,
) -> Result<(LossTerms<Tensor>, Tensor)> {
    let Some(r) = rows else {
        let terms = LossTerms {
            local_entropy: zero.clone(),
            global_entropy: zero.clone(),
            importance: zero.clone(),
            load: zero.clone(),
            z_loss: zero.clone(),
        };
        return Ok((terms, zero.clone()));
    };
    let groups = r.groups.as_ref();
    // Per group, then the mean over the groups.
    let mean_of = |per_group: Tensor| per_group.mean_all();
    let token_entropy = r.probs.mul(&r.log_probs)?.sum_keepdim(D::Minus1)?.neg()?;
    let local_entropy = mean_of(group_mean(&token_entropy, groups)?)?;
    let mean_gate = group_mean(&r.probs, groups)?;
    // The tiny offset keeps 0 * ln 0 (an expert no token uses) at 0 with a finite gradient.
    let gate_entropy = mean_gate
        .mul(&(&mean_gate + 1e-30)?.log()?)?
        .sum_keepdim(D::Minus1)?
        .neg()?;
    let global_entropy = mean_of((gate_entropy.neg()? + global_experts.ln())?.relu()?)?;
    let mean_entropy = mean_of(gate_entropy)?;
    let Balance { importance, load } = balance_of(&r, &mean_gate, zero)?;
    let log_sum_exp = (r.logits.narrow(1, 0, 1)? - r.log_probs.narrow(1, 0, 1)?)?;
    let z_loss = mean_of(group_mean(&log_sum_exp.sqr()?, groups)?)?;
    let terms = LossTerms {
        local_entropy,
        global_entropy,
        importance,
        load,
        z_loss,
    };
    Ok((terms, mean_entropy))
}

/// The importance and load losses of all rows `r`, whatever their modality.
pub(crate) fn joint_balance(r: &RouterRows, zero: &Tensor) -> Result<Balance<Tensor>> {
    balance_of(r, &group_mean(&r.probs, r.groups.as_ref())?, zero)
}

/// The importance and load losses of rows `r`, whose mean gate per group is `mean_gate`
/// [G, E]; each is the mean over the groups.
fn balance_of(r: &RouterRows, mean_gate: &Tensor, zero: &Tensor) -> Result<Balance<Tensor>> {
    // CV^2 is scale-free: that of the mean gate is that of the summed gates.
    let importance = cv_squared(mean_gate)?.mean_all()?;
    let load = match &r.threshold {
        Some((threshold, std)) => {
            // P(expert beats the K-th noisy logit with fresh noise) = 1 - Phi(z).
            let z = threshold
                .broadcast_sub(&r.logits)?
                .affine(1.0 / (std * 2f64.sqrt()), 0.0)?;
            let selection = z.erf()?.affine(-0.5, 0.5)?;
            cv_squared(&group_mean(&selection, r.groups.as_ref())?)?.mean_all()?
        }
        None => zero.clone(),
    };
    Ok(Balance { importance, load })
}

/// Squared coefficient of variation of each row of `v` [G, E]: population variance / mean^2,
/// [G, 1].
pub(crate) fn cv_squared(v: &Tensor) -> Result<Tensor> {
    let mean = v.mean_keepdim(D::Minus1)?;
    let variance = v.broadcast_sub(&mean)?.sqr()?.mean_keepdim(D::Minus1)?;
    variance.div(&mean.sqr()?)
}

#[cfg(test)]
mod tests {
    use super::cv_squared;
    use candle_core::{Device, Result, Tensor};

    #[test]
    fn coefficient_of_variation_squared() -> Result<()> {
        // mean 2.5, population variance 1.25: CV^2 = 0.2.
        let v = Tensor::new(&[[1.0f64, 2.0, 3.0, 4.0], [3.0; 4]], &Device::Cpu)?;
        let cv: Vec<Vec<f64>> = cv_squared(&v)?.to_vec2()?;
        assert!((cv[0][0] - 0.2).abs() < 1e-12);
        assert_eq!(cv[1][0], 0.0);
        Ok(())
    }
}
