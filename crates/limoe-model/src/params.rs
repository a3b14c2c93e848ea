//! Trainable parameters with a seeded, order-independent initialisation.
//!
//! candle's own `VarMap` draws initial values from an unseeded generator, so two runs of the
//! same spec would start from different weights. [`Params`] is a `VarBuilder` backend that
//! derives every parameter's values from the run seed and the parameter's name alone. Under
//! expert parallelism a rank holds a share of each expert tensor: its values are that share's
//! rows of the whole tensor's, so that every placement starts from the same weights.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Result, Shape, Tensor, Var};
use candle_nn::VarBuilder;
use candle_nn::init::{Init, NormalOrUniform};
use candle_nn::var_builder::SimpleBackend;

use crate::moe::experts::is_expert_param;
use crate::random::{Stream, hash_name};

/// The named trainable variables of a model.
#[derive(Clone, Default)]
pub struct Params {
    seed: u64,
    vars: Arc<Mutex<BTreeMap<String, Var>>>,
    /// `(part, parts)`: the expert tensors created through this handle are the `part`-th of
    /// `parts` equal shares (along their first dimension) of the whole ones; `parts` 0 or 1
    /// means whole.
    expert_share: (usize, usize),
}

impl Params {
    /// An empty set whose variables will be initialised from `seed`.
    pub fn new(seed: u64) -> Params {
        Params {
            seed,
            vars: Arc::default(),
            expert_share: (0, 1),
        }
    }

    /// The same set, creating the `part`-th of `parts` shares of each expert tensor
    /// ([`crate::moe::experts::is_expert_param`]) instead of the whole.
    pub(crate) fn sharing_experts(&self, part: usize, parts: usize) -> Params {
        Params {
            expert_share: (part, parts),
            ..self.clone()
        }
    }

    /// A `VarBuilder` creating (or returning existing) variables in this set. The variables
    /// are f32 whatever `dtype` is; with another dtype the builder returns casts of them.
    pub fn builder(&self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self.clone()), dtype, device.clone())
    }

    /// Every variable, by name (sorted).
    pub fn vars(&self) -> Vec<(String, Var)> {
        self.lock()
            .iter()
            .map(|(name, var)| (name.clone(), var.clone()))
            .collect()
    }

    /// The number of scalar parameters.
    pub fn count(&self) -> usize {
        self.lock().values().map(|v| v.elem_count()).sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Var>> {
        // A poisoned lock only means another thread panicked while holding it; the map
        // itself is never left half-updated.
        self.vars.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The initial values of `name` with `shape`: for an expert share, its rows of the whole
    /// tensor's values.
    fn init(&self, shape: &Shape, name: &str, init: Init) -> Vec<f32> {
        let (part, parts) = self.expert_share;
        match shape.dims().split_first() {
            Some((&rows, rest)) if parts > 1 && is_expert_param(name) => {
                let whole: Vec<usize> =
                    std::iter::once(rows * parts).chain(rest.to_vec()).collect();
                let values = self.init_whole(&Shape::from(whole), name, init);
                let n = shape.elem_count();
                values[part * n..(part + 1) * n].to_vec()
            }
            _ => self.init_whole(shape, name, init),
        }
    }

    fn init_whole(&self, shape: &Shape, name: &str, init: Init) -> Vec<f32> {
        let n = shape.elem_count();
        let mut stream = Stream::new(self.seed ^ hash_name(name));
        match init {
            Init::Const(value) => vec![value as f32; n],
            Init::Uniform { lo, up } => (0..n)
                .map(|_| (lo + (up - lo) * stream.uniform()) as f32)
                .collect(),
            Init::Randn { mean, stdev } => (0..n)
                .map(|_| (mean + stdev * stream.normal()) as f32)
                .collect(),
            Init::Kaiming {
                dist,
                fan,
                non_linearity,
            } => {
                let std = non_linearity.gain() / (fan.for_shape(shape) as f64).sqrt();
                match dist {
                    NormalOrUniform::Normal => {
                        (0..n).map(|_| (std * stream.normal()) as f32).collect()
                    }
                    NormalOrUniform::Uniform => {
                        let bound = 3f64.sqrt() * std;
                        (0..n)
                            .map(|_| (bound * (2.0 * stream.uniform() - 1.0)) as f32)
                            .collect()
                    }
                }
            }
        }
    }
}

impl SimpleBackend for Params {
    fn get(&self, s: Shape, name: &str, h: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        if let Some(var) = self.lock().get(name) {
            if var.shape() != &s {
                candle_core::bail!(
                    "parameter `{name}` exists with shape {:?}, asked for {:?}",
                    var.dims(),
                    s.dims()
                );
            }
            return var.as_tensor().to_dtype(dtype);
        }
        // The variable itself is f32 (the master weights) whatever the builder computes in;
        // another dtype reads it through a differentiable cast, so gradients arrive in f32.
        let var = Var::from_vec(self.init(&s, name, h), s, dev)?;
        let tensor = var.as_tensor().to_dtype(dtype)?;
        self.lock().insert(name.to_string(), var);
        Ok(tensor)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> Result<Tensor> {
        match self.lock().get(name) {
            Some(var) => var.as_tensor().to_dtype(dtype)?.to_device(dev),
            None => candle_core::bail!("parameter `{name}` does not exist"),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.lock().contains_key(name)
    }
}
