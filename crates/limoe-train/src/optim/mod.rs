//! AdamW with decoupled weight decay (Loshchilov & Hutter), and gradient accumulation.
//!
//! One update of parameter `p` with gradient `g` (times the step's `grad_scale`), at step `t`:
//! `m = b1 m + (1 - b1) g`, `v = b2 v + (1 - b2) g^2`,
//! `p -= lr * (m / (1 - b1^t) / (sqrt(v / (1 - b2^t)) + eps) + wd * p)`,
//! with `wd = 0` for the parameters [`decays`] excludes. On the CPU each of the three lines is
//! one in-place pass (no temporaries); on other devices they are candle expressions.

mod accumulate;

use std::collections::HashSet;

use candle_core::backprop::GradStore;
use candle_core::{DType, Result, Tensor, Var, bail};
use limoe_core::spec::TrainSpec;
use limoe_model::LOG_LOGIT_SCALE;
use limoe_ops::optim::{AdamUpdate, Ema};

pub use accumulate::GradAccumulator;

/// Clamps the log logit scale in `vars` at `ln(max)` after an optimizer step (open_clip's
/// `logit_scale.clamp_(0, ln 100)`); a model without one is left alone.
pub fn clamp_logit_scale(vars: &[(String, Var)], max: f64) -> candle_core::Result<()> {
    for (_, var) in vars.iter().filter(|(name, _)| name == LOG_LOGIT_SCALE) {
        let clamped = var.as_tensor().minimum(max.ln())?;
        var.set(&clamped)?;
    }
    Ok(())
}

/// Last name segments of the parameters that get no weight decay: norms (`scale`, `shift`),
/// biases (`bias`, and the experts' `b1`, `b2`), embeddings (`table`, `positions`), the MAP
/// head's `query` and the temperature.
const NO_DECAY: [&str; 9] = [
    "scale",
    "shift",
    "bias",
    "b1",
    "b2",
    "table",
    "positions",
    "query",
    LOG_LOGIT_SCALE,
];

/// Whether the parameter called `name` gets weight decay: every parameter except those whose
/// last dot-separated segment is in [`NO_DECAY`].
pub fn decays(name: &str) -> bool {
    let last = name.rsplit('.').next().unwrap_or(name);
    !NO_DECAY.contains(&last)
}

/// AdamW's hyper-parameters (the learning rate comes with each step).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWConfig {
    /// Decay of the first moment (default 0.9).
    pub beta1: f64,
    /// Decay of the second moment (default 0.999).
    pub beta2: f64,
    /// Added to the root of the second moment (default 1e-8).
    pub eps: f64,
    /// Decoupled weight decay, multiplied by the learning rate (default 0).
    pub weight_decay: f64,
}

impl AdamWConfig {
    /// The defaults with the `train` section's weight decay.
    pub fn from_spec(spec: &TrainSpec) -> AdamWConfig {
        AdamWConfig {
            weight_decay: spec.weight_decay,
            ..AdamWConfig::default()
        }
    }
}

impl Default for AdamWConfig {
    fn default() -> AdamWConfig {
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// One parameter with its moments.
struct Slot {
    name: String,
    param: Var,
    m: Var,
    v: Var,
    decay: bool,
}

/// AdamW over named f32 parameters; moments are kept per parameter name, on its device.
pub struct AdamW {
    config: AdamWConfig,
    step: u64,
    slots: Vec<Slot>,
}

impl AdamW {
    /// An optimiser at step 0 with zero moments; errors on a repeated name or a parameter
    /// that is not f32.
    pub fn new(params: &[(String, Var)], config: AdamWConfig) -> Result<AdamW> {
        let mut seen = HashSet::new();
        let mut slots = Vec::with_capacity(params.len());
        for (name, param) in params {
            if !seen.insert(name.as_str()) {
                bail!("parameter `{name}` appears twice");
            }
            if param.dtype() != DType::F32 {
                bail!("parameter `{name}` is {:?}; AdamW needs f32", param.dtype());
            }
            slots.push(Slot {
                name: name.clone(),
                param: param.clone(),
                m: Var::zeros(param.shape(), DType::F32, param.device())?,
                v: Var::zeros(param.shape(), DType::F32, param.device())?,
                decay: decays(name),
            });
        }
        Ok(AdamW {
            config,
            step: 0,
            slots,
        })
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &AdamWConfig {
        &self.config
    }

    /// Updates taken so far (the `t` of the bias corrections).
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// The first and second moments of the parameter called `name`.
    pub fn moments(&self, name: &str) -> Option<(&Tensor, &Tensor)> {
        self.slots
            .iter()
            .find(|s| s.name == name)
            .map(|s| (s.m.as_tensor(), s.v.as_tensor()))
    }

    /// One update at learning rate `lr`, each gradient multiplied by `grad_scale` (the clip
    /// factor; 1 for none). A parameter without a gradient in `grads` is left unchanged, its
    /// moments too; the step count (bias correction) advances for all.
    pub fn step(&mut self, grads: &GradStore, lr: f64, grad_scale: f64) -> Result<()> {
        self.step += 1;
        let c = self.config;
        let t = self.step as i32;
        let bc1 = 1.0 - c.beta1.powi(t);
        let bc2 = 1.0 - c.beta2.powi(t);
        for slot in &self.slots {
            let Some(grad) = grads.get(slot.param.as_tensor()) else {
                continue;
            };
            if grad.shape() != slot.param.shape() {
                bail!(
                    "gradient of `{}` has shape {:?}, the parameter {:?}",
                    slot.name,
                    grad.shape(),
                    slot.param.shape()
                );
            }
            let wd = if slot.decay { c.weight_decay } else { 0.0 };
            let update = AdamUpdate {
                lr: lr as f32,
                wd: wd as f32,
                eps: c.eps as f32,
                bc1: bc1 as f32,
                bc2: bc2 as f32,
            };
            if slot.param.device().is_cpu() {
                let grad = &grad.to_dtype(DType::F32)?.contiguous()?;
                let ema = |beta: f64, square| Ema {
                    beta: beta as f32,
                    scale: grad_scale as f32,
                    square,
                };
                slot.m.inplace_op2(grad, &ema(c.beta1, false))?;
                slot.v.inplace_op2(grad, &ema(c.beta2, true))?;
                slot.param.inplace_op3(&slot.m, &slot.v, &update)?;
            } else {
                update_generic(slot, grad, &update, c, grad_scale)?;
            }
        }
        Ok(())
    }

    /// Every moment as `m.<name>` / `v.<name>`, in parameter order.
    pub(crate) fn state_vars(&self) -> Vec<(String, &Var)> {
        self.slots
            .iter()
            .flat_map(|s| {
                [
                    (format!("m.{}", s.name), &s.m),
                    (format!("v.{}", s.name), &s.v),
                ]
            })
            .collect()
    }

    /// Sets the step count (moments are restored through [`AdamW::state_vars`]).
    pub(crate) fn set_step_count(&mut self, step: u64) {
        self.step = step;
    }
}

/// The update as candle expressions, for devices without the fused loops.
fn update_generic(
    slot: &Slot,
    grad: &Tensor,
    u: &AdamUpdate,
    c: AdamWConfig,
    grad_scale: f64,
) -> Result<()> {
    let g = (grad.to_dtype(DType::F32)? * grad_scale)?;
    let m = ((slot.m.as_tensor() * c.beta1)? + (&g * (1.0 - c.beta1))?)?;
    let v = ((slot.v.as_tensor() * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
    let denom = ((&v / f64::from(u.bc2))?.sqrt()? + f64::from(u.eps))?;
    let step = ((&m / f64::from(u.bc1))? / denom)?;
    let step = (step + (slot.param.as_tensor() * f64::from(u.wd))?)?;
    let p = (slot.param.as_tensor() - (step * f64::from(u.lr))?)?;
    slot.m.set(&m)?;
    slot.v.set(&v)?;
    slot.param.set(&p)
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    #[test]
    fn decay_rule_excludes_norms_biases_embeddings_query_temperature() {
        for name in [
            "encoder.block0.norm1.scale",
            "encoder.block0.norm1.shift",
            "encoder.block0.attention.qkv.bias",
            "patch_embed.positions",
            "token_embed.table",
            "token_embed.positions",
            "image_head.map.query",
            "log_logit_scale",
            "encoder.block1.moe.experts.b1",
            "encoder.block1.moe.experts.b2",
        ] {
            assert!(!decays(name), "{name}");
        }
        for name in [
            "encoder.block0.attention.qkv.weight",
            "encoder.block1.moe.router",
            "encoder.block1.moe.experts.w1",
            "encoder.block1.moe.experts.w2",
            "image_head.projection.weight",
            "patch_embed.projection.weight",
        ] {
            assert!(decays(name), "{name}");
        }
    }

    #[test]
    fn the_logit_scale_is_clamped_as_a_parameter() {
        let dev = Device::Cpu;
        let scale = Var::from_tensor(&Tensor::new(500f32.ln(), &dev).unwrap()).unwrap();
        let other = Var::from_tensor(&Tensor::new(9f32, &dev).unwrap()).unwrap();
        let vars = vec![
            (LOG_LOGIT_SCALE.to_owned(), scale.clone()),
            ("encoder.bias".to_owned(), other.clone()),
        ];
        clamp_logit_scale(&vars, 100.0).unwrap();
        let clamped: f32 = scale.as_tensor().to_scalar().unwrap();
        assert!((clamped.exp() - 100.0).abs() < 1e-3, "{}", clamped.exp());
        assert_eq!(other.as_tensor().to_scalar::<f32>().unwrap(), 9.0);
        scale.set(&Tensor::new(2f32, &dev).unwrap()).unwrap();
        clamp_logit_scale(&vars, 100.0).unwrap();
        assert_eq!(
            scale.as_tensor().to_scalar::<f32>().unwrap(),
            2.0,
            "below the bound"
        );
    }

    /// The fused CPU loops and the candle expressions give the same update.
    #[test]
    fn fused_and_generic_updates_agree() {
        let dev = Device::Cpu;
        let init: Vec<f32> = (0..24).map(|i| (i as f32 - 11.0) * 0.37).collect();
        let grad = Tensor::from_vec(
            (0..24)
                .map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.21)
                .collect::<Vec<f32>>(),
            (4, 6),
            &dev,
        )
        .unwrap();
        let fused = Var::from_vec(init.clone(), (4, 6), &dev).unwrap();
        let config = AdamWConfig {
            weight_decay: 0.1,
            ..AdamWConfig::default()
        };
        let mut opt = AdamW::new(&[("w".into(), fused.clone())], config).unwrap();
        let mut grads = GradStore::default();
        grads.insert(fused.as_tensor(), grad.clone());
        opt.step(&grads, 0.01, 0.5).unwrap();
        opt.step(&grads, 0.02, 1.0).unwrap();

        let generic = Var::from_vec(init, (4, 6), &dev).unwrap();
        let slot = Slot {
            name: "w".into(),
            param: generic.clone(),
            m: Var::zeros((4, 6), DType::F32, &dev).unwrap(),
            v: Var::zeros((4, 6), DType::F32, &dev).unwrap(),
            decay: true,
        };
        for (t, lr, scale) in [(1, 0.01, 0.5), (2, 0.02, 1.0)] {
            let update = AdamUpdate {
                lr: lr as f32,
                wd: 0.1,
                eps: 1e-8,
                bc1: (1.0 - 0.9f64.powi(t)) as f32,
                bc2: (1.0 - 0.999f64.powi(t)) as f32,
            };
            update_generic(&slot, &grad, &update, config, scale).unwrap();
        }
        let a = fused.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let b = generic.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for (a, b) in a.iter().zip(&b) {
            assert!((a - b).abs() <= 1e-6 * a.abs().max(1.0), "{a} vs {b}");
        }
    }
}
