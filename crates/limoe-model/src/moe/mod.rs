//! The sparse Mixture-of-Experts MLP of LIMoE: router, noisy top-K, capacity, Batch Priority
//! Routing, device-side dispatch/combine, batched expert MLPs, auxiliary losses, statistics.
//!
//! Design:
//! - Parameters: `router` [width, E] (linear, no bias) and the experts batched over E:
//!   `experts.w1` [E, width, mlp], `experts.b1` [E, mlp], `experts.w2` [E, mlp, width],
//!   `experts.b2` [E, width].
//! - Router: logits = x Wr, p = softmax(logits) (composite, differentiable). Training picks the
//!   top-K of logits + N(0, (noise/E)^2), the noise drawn on the host from a generator keyed by
//!   (noise_seed, token, expert) and uploaded; evaluation picks on the clean logits.
//! - Routing ([`routing::route`]) is discrete and runs on the device: it gives each
//!   (choice, token) a row of an expert-major buffer of E * groups * C rows (dropped choices
//!   point at a trailing dummy row that is never computed). Tokens are routed in the
//!   independent groups the caller gives ([`Groups`]); each group's capacity is computed from
//!   its own size, and a smaller group's surplus buffer rows stay empty.
//! - Dispatch: one gather of x fills the [E * groups * C, width] buffer (each row reads its
//!   token; empty rows read token 0 and are never combined); the experts run as one batched
//!   matmul pair, on the CPU one op with the gather ([`Experts::forward_gathered`]);
//!   combine: every (choice, token) row times its raw clean gate p(e|x) (not renormalised; 0
//!   when dropped), summed over K, as one op ([`limoe_ops::gather_weighted_sum`]).
//! - Auxiliary losses ([`losses`]): on the CPU computed on the host in f64 from the router
//!   logits as one autograd node, elsewhere as device tensors.
//! - Precision: the router logits, softmax, routing and auxiliary losses are f32 whatever the
//!   layer computes in (bf16 under mixed precision).
//! - Expert parallelism ([`parallel`]): a layer may hold only its rank's share of the
//!   experts; the buffer then goes to the experts' ranks and back by all-to-all.
//! - Differentiable: y wrt x (through dispatch and the router), expert weights, and the router
//!   weight through the combine gates and the auxiliary losses. The choice of experts, the
//!   BPR order and the capacity drops carry no gradient.

pub mod aux;
pub mod config;
pub mod experts;
pub mod groups;
mod host_aux;
mod losses;
mod noise;
pub mod parallel;
pub mod routing;
pub mod stats;

use candle_core::{DType, Result, Tensor, bail};
use candle_nn::{Init, VarBuilder};

pub use aux::{Aux, AuxTerms, AuxValues, AuxWeights, Balance, LossTerms, PerModality, aux_weights};
pub use config::{MoeConfig, RouteMode, RoutedTokens, TokenCounts};
pub use experts::Experts;
pub use groups::Groups;
pub use parallel::ExpertGroup;
pub use routing::{RouteSpec, Routing, capacity, route};
pub use stats::{ModalityStats, RoutingStats};

use losses::{AuxLosses, RouterCall};

/// One MoE layer.
#[derive(Debug, Clone)]
pub struct Moe {
    cfg: MoeConfig,
    /// [width, E]
    router: Tensor,
    /// All E experts, or this rank's share of them under expert parallelism.
    experts: Experts,
    /// The ranks holding the other experts, under expert parallelism.
    group: Option<ExpertGroup>,
}

/// The result of [`Moe::forward`].
#[derive(Debug, Clone)]
pub struct MoeOutput {
    /// [T, width] combined expert outputs; dropped tokens get 0 (the caller adds the residual).
    pub y: Tensor,
    /// Unweighted auxiliary loss terms per modality. On the CPU they are values only: the
    /// gradient goes through `aux_loss`.
    pub aux: AuxTerms,
    /// The terms weighted by the configuration's `aux` weights and summed, a scalar.
    pub aux_loss: Tensor,
    /// Routing statistics (computed on request).
    pub stats: RoutingStats,
    /// [T, K] u32: the expert of each token and choice, E where the choice was dropped.
    pub experts: Tensor,
}

impl Moe {
    /// Creates the layer's parameters under `vb` (`router`, `experts.{w1,b1,w2,b2}`): every
    /// expert, or with a `group` (expert parallelism) this rank's share of them.
    pub fn new(vb: VarBuilder, cfg: &MoeConfig, group: Option<&ExpertGroup>) -> Result<Moe> {
        cfg.validate()?;
        let count = cfg.routing.experts;
        if let Some(group) = group
            && !count.is_multiple_of(group.parts())
        {
            bail!(
                "moe: {count} experts do not split over {} ranks",
                group.parts()
            );
        }
        let bound = (6.0 / (cfg.width + count) as f64).sqrt();
        let router = vb.get_with_hints(
            (cfg.width, count),
            "router",
            Init::Uniform {
                lo: -bound,
                up: bound,
            },
        )?;
        let held = group.map_or(count, |g| g.local(count).len());
        let experts = Experts::new(&vb.pp(experts::SCOPE), held, cfg.width, cfg.mlp_dim)?;
        Ok(Moe {
            cfg: cfg.clone(),
            router,
            experts,
            group: group.cloned(),
        })
    }

    /// The layer's configuration.
    pub fn config(&self) -> &MoeConfig {
        &self.cfg
    }

    /// Routes and transforms `x` [T, width], the tokens of one routing call, image tokens
    /// first (`routed.counts.image` rows, then `routed.counts.text` rows).
    pub fn forward(&self, x: &Tensor, routed: &RoutedTokens, mode: RouteMode) -> Result<MoeOutput> {
        let cfg = &self.cfg;
        let tokens = routed.counts;
        let (t, width) = x.dims2()?;
        if width != cfg.width || t != tokens.total() || t == 0 {
            bail!(
                "moe: input {:?} must be [image + text tokens = {} > 0, width = {}]",
                x.dims(),
                tokens.total(),
                cfg.width
            );
        }
        let moe_spec = &cfg.routing;
        let e = moe_spec.experts;
        let logits = x.matmul(&self.router)?.to_dtype(router_dtype(x.dtype()))?;
        let log_probs = candle_nn::ops::log_softmax(&logits, 1)?;
        let probs = log_probs.exp()?;

        let (capacity_factor, bpr, drawn) = match mode {
            RouteMode::Train { noise_seed, .. } if moe_spec.noise > 0.0 => {
                let std = moe_spec.noise / e as f64;
                let draws = noise::router_noise(noise_seed, &routed.noise_keys, e, std);
                (moe_spec.capacity.train, moe_spec.bpr, Some((draws, std)))
            }
            RouteMode::Train { .. } => (moe_spec.capacity.train, moe_spec.bpr, None),
            RouteMode::Eval => (
                moe_spec.capacity.eval.unwrap_or(f64::INFINITY),
                moe_spec.bpr,
                None,
            ),
            RouteMode::Capped {
                capacity_factor,
                bpr,
            } => (capacity_factor, bpr, None),
        };
        let noisy = match &drawn {
            Some((draws, _)) => {
                let noise =
                    Tensor::from_slice(draws, (t, e), x.device())?.to_dtype(logits.dtype())?;
                Some((&logits + noise)?)
            }
            None => None,
        };
        let scores = noisy.as_ref().unwrap_or(&logits).detach();
        let spec = RouteSpec {
            experts: e,
            top_k: moe_spec.top_k,
            capacity_factor,
            bpr,
        };
        let routing = route(&scores, &probs, &spec, &routed.groups)?;

        let y = self.dispatch_combine(x, &probs, &routing)?;
        let kth = routing
            .chosen
            .narrow(1, moe_spec.top_k - 1, 1)?
            .contiguous()?;
        let call = RouterCall {
            logits: &logits,
            log_probs: &log_probs,
            probs: &probs,
            noise: drawn.as_ref().map(|(draws, std)| (&draws[..], *std)),
            noisy: noisy.as_ref(),
            kth: &kth,
            routed,
        };
        let AuxLosses {
            terms: aux,
            loss: aux_loss,
            entropies,
        } = match x.device().is_cpu() {
            true => call.on_host(cfg)?,
            false => call.as_tensors(cfg)?,
        };
        let stats = RoutingStats::new(routing.experts.clone(), probs.clone(), tokens, entropies);
        Ok(MoeOutput {
            y,
            aux,
            aux_loss,
            stats,
            experts: routing.experts,
        })
    }

    /// Gathers x into the expert buffers, runs the experts, gathers and weights by the gates.
    fn dispatch_combine(&self, x: &Tensor, probs: &Tensor, routing: &Routing) -> Result<Tensor> {
        // Empty rows read some token: their outputs are never combined, so they get no gradient.
        let experts = self.cfg.routing.experts;
        let out = match &self.group {
            Some(group) => {
                let buffer = x.index_select(&routing.fill, 0)?;
                group.run(&self.experts, &buffer, experts)?
            }
            // On the CPU the experts skip their empty slots (a buffer fills from its first
            // row).
            None => {
                let filled = match (limoe_ops::runs_fused(x), routing.groups) {
                    (true, 1) => Some(filled_slots(&routing.experts, experts)?),
                    _ => None,
                };
                let filled = filled.as_deref();
                self.experts.forward_gathered(x, &routing.fill, filled)?
            }
        };
        // Raw clean gate of each choice, zeroed where the choice was dropped: [K, T].
        let weights = probs
            .gather(&routing.chosen, 1)?
            .t()?
            .mul(&routing.kept.to_dtype(probs.dtype())?)?
            .to_dtype(x.dtype())?;
        limoe_ops::gather_weighted_sum(&out, &routing.combine, &weights)
    }
}

/// The dtype the router softmax, the routing and the auxiliary losses compute in: f32 for a
/// half-precision layer (bf16 logits would tie and misorder close experts), else the layer's.
fn router_dtype(layer: DType) -> DType {
    match layer {
        DType::BF16 | DType::F16 => DType::F32,
        other => other,
    }
}

/// Slots taken in each expert's buffer (one routing group): the kept choices per expert.
fn filled_slots(experts: &Tensor, count: usize) -> Result<Vec<usize>> {
    let mut filled = vec![0; count];
    for expert in experts.flatten_all()?.to_vec1::<u32>()? {
        if let Some(slots) = filled.get_mut(expert as usize) {
            *slots += 1;
        }
    }
    Ok(filled)
}
