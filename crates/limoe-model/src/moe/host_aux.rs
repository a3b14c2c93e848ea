//! The auxiliary losses of a CPU routing call computed on the host, as one graph node.
//!
//! On the CPU the [`aux`](super::aux) terms built from tensor ops cost more than the router
//! itself: about 30 small ops per modality in the forward pass, and as many nodes for the
//! backward pass to zero and add into, all to compute numbers from a [T, E] matrix. Here
//! every term's value comes from plain loops over the router logits (for the logs, whatever
//! its weight), and the weighted sum is one [`CustomOp1`] node on the logits whose backward
//! pass writes the gradient of the terms with a non-zero weight in one loop. The formulas are
//! those of `aux.rs`, term by term (tested equal, values and gradients).

use std::sync::{Arc, OnceLock};

use candle_core::cpu::erf::erf_f64;
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};

use super::aux::{Aux, AuxValues, AuxWeights, Balance, LossTerms, PerModality};
use super::groups::RowGroups;

/// The offset that keeps `q ln q` of an unused expert at 0 (as in `aux.rs`).
const LOG_OFFSET: f64 = 1e-30;

/// The router of one routing call on the host, each row's softmax done once.
#[derive(Debug)]
pub(crate) struct HostRouter {
    experts: usize,
    /// [T * E] row-major router logits.
    logits: Vec<f64>,
    /// [T * E] log p(e|x).
    log_probs: Vec<f64>,
    /// [T * E] p(e|x).
    probs: Vec<f64>,
    /// [T] logsumexp of each row's logits.
    log_sum_exp: Vec<f64>,
    /// Training noise: the K-th choice of each row, its noisy logit, and the noise std.
    threshold: Option<(Vec<usize>, Vec<f64>, f64)>,
}

impl HostRouter {
    /// The router of `logits` [T, E]; with training noise `noise` ([T * E] draws, std),
    /// `kth` is each row's K-th choice, whose noisy logit is the load loss's threshold.
    pub fn new(logits: &Tensor, noise: Option<(&[f64], f64)>, kth: &[u32]) -> Result<HostRouter> {
        let (t, experts) = logits.dims2()?;
        let logits = logits
            .to_dtype(DType::F64)?
            .flatten_all()?
            .to_vec1::<f64>()?;
        let mut log_probs = vec![0.0; t * experts];
        let mut log_sum_exp = vec![0.0; t];
        for (row, (out, lse)) in log_probs
            .chunks_mut(experts)
            .zip(&mut log_sum_exp)
            .enumerate()
        {
            let z = &logits[row * experts..(row + 1) * experts];
            let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            *lse = max + z.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
            for (o, v) in out.iter_mut().zip(z) {
                *o = v - *lse;
            }
        }
        let threshold = noise.map(|(draws, std)| {
            let kth: Vec<usize> = kth.iter().map(|&e| e as usize).collect();
            let noisy = (kth.iter().enumerate())
                .map(|(row, &e)| logits[row * experts + e] + draws[row * experts + e])
                .collect();
            (kth, noisy, std)
        });
        Ok(HostRouter {
            experts,
            logits,
            probs: log_probs.iter().map(|v| v.exp()).collect(),
            log_probs,
            log_sum_exp,
            threshold,
        })
    }

    fn prob(&self, row: usize, e: usize) -> f64 {
        self.probs[row * self.experts + e]
    }

    /// `P(expert e beats row's K-th noisy logit under fresh noise)` and the derivative of that
    /// probability by the expert's logit minus the threshold's scale.
    fn selection(&self, row: usize, e: usize) -> Option<(f64, f64)> {
        let (_, noisy, std) = self.threshold.as_ref()?;
        let scale = 1.0 / (std * 2f64.sqrt());
        let z = (noisy[row] - self.logits[row * self.experts + e]) * scale;
        let slope = -(-z * z).exp() / std::f64::consts::PI.sqrt() * scale;
        Some((0.5 - 0.5 * erf_f64(z), slope))
    }
}

/// Some rows of a routing call, `start..start + len`, split by routing group (`None`: one
/// group).
#[derive(Debug)]
pub(crate) struct RowSet {
    pub start: usize,
    pub len: usize,
    pub groups: Option<RowGroups>,
}

impl RowSet {
    /// The group of row `start + row`.
    fn group_of(&self, row: usize) -> usize {
        self.groups.as_ref().map_or(0, |g| g.index[row] as usize)
    }

    /// Rows per group.
    fn sizes(&self) -> Vec<usize> {
        self.groups
            .as_ref()
            .map_or(vec![self.len], |g| g.sizes.clone())
    }

    /// [G, E] the mean over each group's rows of `value(row, e)`.
    fn group_means(&self, experts: usize, value: impl Fn(usize, usize) -> f64) -> Vec<Vec<f64>> {
        let sizes = self.sizes();
        let mut means = vec![vec![0.0; experts]; sizes.len()];
        for row in 0..self.len {
            let g = self.group_of(row);
            for (e, m) in means[g].iter_mut().enumerate() {
                *m += value(self.start + row, e) / sizes[g] as f64;
            }
        }
        means
    }
}

/// Entropy `-sum q ln(q + offset)` of a mean gate and its derivative by each `q_e`.
fn entropy_of_mean(q: &[f64]) -> (f64, Vec<f64>) {
    let h = -q.iter().map(|v| v * (v + LOG_OFFSET).ln()).sum::<f64>();
    let dh = q
        .iter()
        .map(|v| -((v + LOG_OFFSET).ln() + v / (v + LOG_OFFSET)))
        .collect();
    (h, dh)
}

/// Squared coefficient of variation (population variance / mean^2) of `v` and its
/// derivative by each `v_e`.
fn cv_squared(v: &[f64]) -> (f64, Vec<f64>) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let variance = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    let d = v
        .iter()
        .map(|x| 2.0 * (x - mean) / (n * mean * mean) - 2.0 * variance / (n * mean.powi(3)))
        .collect();
    (variance / (mean * mean), d)
}

/// The loss terms of `rows` (one modality's, or all rows for the joint balance) with the
/// entropy of their mean gate: every term with `all`, else only those `weights` counts (the
/// others are 0); with `grad`, adds `d (sum_term weight * term) / d logits`.
fn terms(
    router: &HostRouter,
    rows: &RowSet,
    global_experts: f64,
    weights: &LossTerms<f64>,
    all: bool,
    mut grad: Option<&mut [f64]>,
) -> (LossTerms<f64>, f64) {
    if rows.len == 0 {
        return (LossTerms::default(), 0.0);
    }
    let wanted = |weight: f64| all || weight != 0.0;
    let want_load = router.threshold.is_some() && wanted(weights.load);
    let e = router.experts;
    let sizes = rows.sizes();
    let groups = sizes.len() as f64;
    let mean_gate = match wanted(weights.global_entropy) || wanted(weights.importance) {
        true => rows.group_means(e, |row, j| router.prob(row, j)),
        false => Vec::new(),
    };
    let selection = match want_load {
        true => rows.group_means(e, |row, j| router.selection(row, j).map_or(0.0, |s| s.0)),
        false => Vec::new(),
    };
    let mut values = LossTerms::default();
    let mut mean_entropy = 0.0;
    // d (weighted terms) / d p(e|x) of a row in group g, before the softmax's Jacobian.
    let mut gate_grad = vec![vec![0.0; e]; sizes.len()];
    for (g, q) in mean_gate.iter().enumerate() {
        let (h, dh) = entropy_of_mean(q);
        mean_entropy += h / groups;
        let shortfall = global_experts.ln() - h;
        values.global_entropy += shortfall.max(0.0) / groups;
        let (importance, d_importance) = cv_squared(q);
        values.importance += importance / groups;
        // The relu's derivative at 0 is 1, as candle's.
        let global_on = if shortfall >= 0.0 { 1.0 } else { 0.0 };
        for j in 0..e {
            gate_grad[g][j] = (weights.global_entropy * global_on * -dh[j]
                + weights.importance * d_importance[j])
                / (groups * sizes[g] as f64);
        }
    }
    // d (weighted load) / d selection of a row in group g.
    let mut selection_grad = vec![vec![0.0; e]; sizes.len()];
    for (g, s) in selection.iter().enumerate() {
        let (load, d_load) = cv_squared(s);
        values.load += load / groups;
        for j in 0..e {
            selection_grad[g][j] = weights.load * d_load[j] / (groups * sizes[g] as f64);
        }
    }
    let (want_local, want_z) = (wanted(weights.local_entropy), wanted(weights.z_loss));
    for row in 0..rows.len {
        let (r, g) = (rows.start + row, rows.group_of(row));
        let share = 1.0 / (groups * sizes[g] as f64);
        let (p, log_p) = (
            &router.probs[r * e..(r + 1) * e],
            &router.log_probs[r * e..(r + 1) * e],
        );
        let h = match want_local {
            true => -p.iter().zip(log_p).map(|(p, l)| p * l).sum::<f64>(),
            false => 0.0,
        };
        values.local_entropy += h * share;
        let lse = router.log_sum_exp[r];
        if want_z {
            values.z_loss += lse * lse * share;
        }
        let Some(grad) = grad.as_deref_mut() else {
            continue;
        };
        let out = &mut grad[r * e..(r + 1) * e];
        // Through the softmax: dz_j = p_j (dp_j - sum_i p_i dp_i).
        let pulled: f64 = p.iter().zip(&gate_grad[g]).map(|(p, d)| p * d).sum();
        for j in 0..e {
            out[j] += p[j] * (gate_grad[g][j] - pulled)
                // dH/dz_j = -p_j (ln p_j + H).
                - weights.local_entropy * share * p[j] * (log_p[j] + h)
                + weights.z_loss * share * 2.0 * lse * p[j];
        }
        if let Some((kth, _, _)) = &router.threshold
            && weights.load != 0.0
        {
            // The threshold is the K-th choice's noisy logit: each expert's selection falls
            // as its own logit falls behind it and rises with it.
            for j in 0..e {
                if let Some((_, slope)) = router.selection(r, j) {
                    let d = selection_grad[g][j] * slope;
                    out[j] -= d;
                    out[kth[r]] += d;
                }
            }
        }
    }
    (values, mean_entropy)
}

/// Every auxiliary term of one routing call, from the host router.
#[derive(Debug)]
pub struct HostAux {
    router: HostRouter,
    /// The rows of each modality, then all rows (the joint balance).
    rows: [RowSet; 3],
    global_experts: [f64; 2],
    weights: AuxWeights,
    /// Every term's value, computed the first time the logs ask.
    values: OnceLock<HostValues>,
}

/// The unweighted values of [`HostAux`], the weighted total, and each modality's entropy of
/// its mean gate (for the statistics).
#[derive(Debug, Clone)]
pub(crate) struct HostValues {
    pub terms: AuxValues,
    pub total: f64,
    pub mean_entropy: [f64; 2],
}

impl HostAux {
    /// The terms of `router`'s `rows`: each modality's, then all rows.
    pub(crate) fn new(
        router: HostRouter,
        rows: [RowSet; 3],
        global_experts: [f64; 2],
        weights: &AuxWeights,
    ) -> HostAux {
        HostAux {
            router,
            rows,
            global_experts,
            weights: weights.clone(),
            values: OnceLock::new(),
        }
    }

    /// Every term with `all`, else the weighted ones; with `grad` ([T * E]) the gradient of
    /// the weighted total added in.
    fn evaluate(&self, all: bool, mut grad: Option<&mut [f64]>) -> HostValues {
        let w = &self.weights;
        let [image_rows, text_rows, all_rows] = &self.rows;
        let mut modality = |rows: &RowSet, m: usize, weights: &LossTerms<f64>| {
            let global = self.global_experts[m];
            terms(
                &self.router,
                rows,
                global,
                weights,
                all,
                grad.as_deref_mut(),
            )
        };
        let (image, image_entropy) = modality(image_rows, 0, &w.modality.image);
        let (text, text_entropy) = modality(text_rows, 1, &w.modality.text);
        let joint_weights = LossTerms {
            importance: w.joint.importance,
            load: w.joint.load,
            ..LossTerms::default()
        };
        // Of all rows, only the balancing terms are read.
        let (joint, _) = terms(&self.router, all_rows, 1.0, &joint_weights, all, grad);
        let terms = Aux {
            modality: PerModality { image, text },
            joint: Balance {
                importance: joint.importance,
                load: joint.load,
            },
        };
        HostValues {
            total: terms.weighted_total(w),
            terms,
            mean_entropy: [image_entropy, text_entropy],
        }
    }

    /// Every term's value (computed once).
    pub(crate) fn values(&self) -> &HostValues {
        self.values.get_or_init(|| self.evaluate(true, None))
    }

    /// The weighted total as a node on `logits` (the logits the router was read from) whose
    /// backward pass is this struct's gradient.
    pub(crate) fn loss(self: &Arc<Self>, logits: &Tensor) -> Result<Tensor> {
        let node = AuxLoss {
            aux: self.clone(),
            total: self.evaluate(false, None).total,
        };
        logits.apply_op1_arc(Arc::new(Box::new(node)))
    }
}

/// The weighted auxiliary loss of one routing call as a graph node on the router logits.
struct AuxLoss {
    aux: Arc<HostAux>,
    total: f64,
}

impl CustomOp1 for AuxLoss {
    fn name(&self) -> &'static str {
        "moe-aux-loss"
    }

    /// The total computed from these logits when the node was made.
    fn cpu_fwd(&self, storage: &CpuStorage, _layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let value = match storage {
            CpuStorage::F32(_) => CpuStorage::F32(vec![self.total as f32]),
            CpuStorage::F64(_) => CpuStorage::F64(vec![self.total]),
            _ => candle_core::bail!("moe-aux-loss: router logits must be f32 or f64"),
        };
        Ok((value, Shape::from(())))
    }

    fn bwd(&self, logits: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let mut grad = vec![0.0; logits.elem_count()];
        self.aux.evaluate(false, Some(&mut grad));
        let grad =
            Tensor::from_vec(grad, logits.shape(), logits.device())?.to_dtype(logits.dtype())?;
        Ok(Some(grad.broadcast_mul(grad_res)?))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::super::aux::{GroupIndex, RouterRows, joint_balance, modality_terms};
    use super::super::groups::Groups;
    use super::*;

    /// Every term, values and gradient, equals the tensor-op formulas of `aux.rs` (the GPU's
    /// path): 3 examples of 2 patches and 1, 3 and 2 text tokens, in 2 routing groups, with
    /// training noise and every weight non-zero.
    #[test]
    fn host_terms_equal_the_tensor_terms() -> Result<()> {
        let weights = Aux {
            modality: PerModality {
                image: LossTerms {
                    local_entropy: 0.3,
                    global_entropy: 0.7,
                    importance: 0.2,
                    load: 0.5,
                    z_loss: 0.1,
                },
                text: LossTerms {
                    local_entropy: 0.6,
                    global_entropy: 0.4,
                    importance: 0.9,
                    load: 0.8,
                    z_loss: 0.05,
                },
            },
            joint: Balance {
                importance: 0.25,
                load: 0.35,
            },
        };
        check_against_tensors(&weights)
    }

    /// With the LIMoE recipe's weights (entropies only) the terms left out of the loss still
    /// have their values, and the loss and gradient are those of the weighted terms alone.
    #[test]
    fn unweighted_terms_are_values_only() -> Result<()> {
        let entropies = LossTerms {
            local_entropy: 0.01,
            global_entropy: 0.02,
            ..LossTerms::default()
        };
        let weights = Aux {
            modality: PerModality {
                image: entropies.clone(),
                text: entropies,
            },
            joint: Balance::default(),
        };
        check_against_tensors(&weights)
    }

    /// The host's values, loss and gradient against the tensor path's for `weights`.
    fn check_against_tensors(weights: &AuxWeights) -> Result<()> {
        let (t, e, std) = (12, 3, 0.4);
        let values: Vec<f64> = (0..t * e)
            .map(|i| ((i * 7919) % 23) as f64 / 9.0 - 1.2)
            .collect();
        let logits = Var::from_vec(values, (t, e), &Device::Cpu)?;
        let draws: Vec<f64> = (0..t * e)
            .map(|i| ((i * 31) % 11) as f64 * 0.05 - 0.25)
            .collect();
        let kth: Vec<u32> = (0..t).map(|row| (row % e) as u32).collect();
        let groups = Groups::of_examples(2, &[1, 3, 2], 2)?;
        let ranges = [(0, 6), (6, 6), (0, t)];
        let global = [3.0, 2.0];

        // The tensor-op terms, differentiated by candle.
        let x = logits.as_tensor();
        let log_probs = candle_nn::ops::log_softmax(x, 1)?;
        let probs = log_probs.exp()?;
        let noisy = (x + Tensor::from_slice(&draws, (t, e), &Device::Cpu)?)?;
        let kth_index = Tensor::from_slice(&kth, (t, 1), &Device::Cpu)?;
        let threshold = noisy.gather(&kth_index, 1)?;
        let rows_of = |(start, n): (usize, usize)| -> Result<RouterRows> {
            Ok(RouterRows {
                logits: x.narrow(0, start, n)?,
                log_probs: log_probs.narrow(0, start, n)?,
                probs: probs.narrow(0, start, n)?,
                threshold: Some((threshold.narrow(0, start, n)?, std)),
                groups: match groups.of_rows(start..start + n) {
                    Some(g) => Some(GroupIndex::upload(&g, x)?),
                    None => None,
                },
            })
        };
        let zero = Tensor::zeros((), DType::F64, &Device::Cpu)?;
        let (image, image_entropy) = modality_terms(Some(rows_of(ranges[0])?), global[0], &zero)?;
        let (text, text_entropy) = modality_terms(Some(rows_of(ranges[1])?), global[1], &zero)?;
        let joint = joint_balance(&rows_of(ranges[2])?, &zero)?;
        let tensors = Aux {
            modality: PerModality { image, text },
            joint,
        };
        let expected = tensors.to_host()?;
        let expected_total = tensors.weighted(weights)?;
        let expected_grad = expected_total.backward()?.get(x).expect("gradient").clone();

        let router = HostRouter::new(x, Some((&draws, std)), &kth)?;
        let rows = ranges.map(|(start, len)| RowSet {
            start,
            len,
            groups: groups.of_rows(start..start + len),
        });
        let aux = Arc::new(HostAux::new(router, rows, global, weights));
        let total = aux.loss(x)?;
        let grad = total.backward()?.get(x).expect("gradient").clone();
        let host = aux.values();

        let close = |a: f64, b: f64| (a - b).abs() < 1e-9 * (1.0 + b.abs());
        for (got, want) in host
            .terms
            .modality
            .both()
            .iter()
            .zip(expected.modality.both())
        {
            for ((name, g), (_, w)) in got.entries().into_iter().zip(want.entries()) {
                assert!(close(*g, *w), "{name}: {g} vs {w}");
            }
        }
        assert!(close(
            host.terms.joint.importance,
            expected.joint.importance
        ));
        assert!(close(host.terms.joint.load, expected.joint.load));
        assert!(close(total.to_scalar()?, expected_total.to_scalar()?));
        assert!(close(host.total, expected_total.to_scalar()?));
        for (m, entropy) in [image_entropy, text_entropy].iter().enumerate() {
            assert!(close(host.mean_entropy[m], entropy.to_scalar()?));
        }
        let (grad, expected_grad) = (grad.flatten_all()?.to_vec1::<f64>()?, expected_grad);
        for (i, (g, w)) in grad
            .iter()
            .zip(expected_grad.flatten_all()?.to_vec1::<f64>()?)
            .enumerate()
        {
            assert!(close(*g, w), "d/d logit {i}: {g} vs {w}");
        }
        Ok(())
    }
}
