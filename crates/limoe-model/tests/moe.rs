//! The MoE layer: routing on hand-built gates (capacity, K-major BPR order, drops, groups),
//! combine weights, determinism, auxiliary loss values and finite-difference gradients.

use candle_core::{DType, Device, Result, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use limoe_core::spec::{self, AuxSpec, Capacity, MoeSpec, Scope};
use limoe_model::moe::{
    Aux, AuxValues, AuxWeights, Balance, Groups, LossTerms, Moe, MoeConfig, MoeOutput, PerModality,
    RouteMode, RouteSpec, RoutedTokens, Routing, TokenCounts, aux_weights, capacity, route,
};

fn cfg(experts: usize, top_k: usize, capacity: f64, bpr: bool) -> MoeConfig {
    MoeConfig {
        width: 4,
        mlp_dim: 6,
        routing: MoeSpec {
            experts,
            top_k,
            every: None,
            last: None,
            capacity: Capacity {
                train: capacity,
                eval: Some(capacity),
            },
            bpr,
            noise: 1.0,
            group_size: None,
        },
        global_experts: spec::PerModality::both(1.0),
        aux: AuxWeights::default(),
    }
}

fn spec(experts: usize, top_k: usize, capacity_factor: f64, bpr: bool) -> RouteSpec {
    RouteSpec {
        experts,
        top_k,
        capacity_factor,
        bpr,
    }
}

fn gates(rows: &[&[f32]]) -> Result<Tensor> {
    let e = rows[0].len();
    let flat: Vec<f32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    Tensor::from_vec(flat, (rows.len(), e), &Device::Cpu)
}

/// Routes `probs` as their own scores in consecutive groups of `group` tokens (one group of
/// all when `None`).
fn grouped(probs: &Tensor, spec: &RouteSpec, group: Option<usize>) -> Result<Routing> {
    route(
        probs,
        probs,
        spec,
        &Groups::consecutive(probs.dim(0)?, group)?,
    )
}

fn experts_of(probs: &Tensor, spec: &RouteSpec, group: Option<usize>) -> Result<Vec<Vec<u32>>> {
    grouped(probs, spec, group)?.experts.to_vec2()
}

/// One layer's forward pass on `counts` tokens in the layer's own consecutive groups.
fn forward(moe: &Moe, x: &Tensor, counts: TokenCounts, mode: RouteMode) -> Result<MoeOutput> {
    let tokens = RoutedTokens::consecutive(counts, moe.config().routing.group_size)?;
    moe.forward(x, &tokens, mode)
}

/// A layer with seeded random weights in f64 on the CPU.
fn layer(config: &MoeConfig) -> Result<(Moe, VarMap)> {
    let map = VarMap::new();
    let moe = Moe::new(
        VarBuilder::from_varmap(&map, DType::F64, &Device::Cpu),
        config,
        None,
    )?;
    Ok((moe, map))
}

fn var(map: &VarMap, name: &str) -> Var {
    map.data().lock().unwrap()[name].clone()
}

/// Deterministic pseudo-random values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        })
        .collect()
}

fn tensor(shape: (usize, usize), seed: u64) -> Result<Tensor> {
    Tensor::from_vec(values(shape.0 * shape.1, seed), shape, &Device::Cpu)
}

#[test]
fn capacity_formula() {
    assert_eq!(capacity(10, 1, 1.0, 4), 3);
    assert_eq!(capacity(10, 2, 1.25, 4), 7);
    assert_eq!(capacity(8, 1, 1.0, 4), 2);
    assert_eq!(capacity(3, 1, 10.0, 2), 3, "never more slots than tokens");
    assert_eq!(capacity(1, 1, 0.01, 8), 1);
}

#[test]
fn bpr_changes_which_tokens_drop() -> Result<()> {
    // Top-1 gates: t0 -> e0 0.6, t1 -> e0 0.9, t2 -> e1 0.7, t3 -> e0 0.8. C = ceil(4*0.5/2) = 1.
    let p = gates(&[&[0.6, 0.4], &[0.9, 0.1], &[0.3, 0.7], &[0.8, 0.2]])?;
    let drop = 2;
    // Token order: e0 keeps t0, drops t1 and t3.
    let plain = experts_of(&p, &spec(2, 1, 0.5, false), None)?;
    assert_eq!(plain, [[0], [drop], [1], [drop]]);
    // BPR: e0 keeps its highest top-1 gate, t1.
    let bpr = experts_of(&p, &spec(2, 1, 0.5, true), None)?;
    assert_eq!(bpr, [[drop], [0], [1], [drop]]);
    Ok(())
}

#[test]
fn bpr_is_k_major() -> Result<()> {
    // Choices: t0 (e0, e1), t1 (e1, e2), t2 (e2, e0); C = ceil(3*2*0.5/3) = 1.
    // Every first choice is placed before any second choice, so all second choices drop
    // (token-major filling would let t1's second choice take e2 from t2's first).
    let p = gates(&[&[0.5, 0.3, 0.2], &[0.1, 0.6, 0.3], &[0.25, 0.35, 0.4]])?;
    let r = grouped(&p, &spec(3, 2, 0.5, true), None)?;
    assert_eq!(r.experts.to_vec2::<u32>()?, [[0, 3], [1, 3], [2, 3]]);
    assert_eq!(r.chosen.to_vec2::<u32>()?, [[0, 1], [1, 2], [2, 1]]);
    // With room for two per expert, BPR order decides positions: firsts at 0, seconds at 1.
    let r = grouped(&p, &spec(3, 2, 1.0, true), None)?;
    assert_eq!(r.capacity, 2);
    assert_eq!(r.experts.to_vec2::<u32>()?, [[0, 1], [1, 2], [2, 3]]);
    // Rows e * C + position: first choices [0, 2, 4]; second choices t1 -> e2 (5), then
    // t0 -> e1 (3), then t2 -> e1 would be position 2: dropped (dummy row 6).
    assert_eq!(r.dispatch.to_vec2::<u32>()?, [[0, 2, 4], [3, 5, 6]]);
    // Buffer row -> token (row 1 is empty).
    assert_eq!(r.fill.to_vec1::<u32>()?, [0, 0, 1, 0, 2, 1]);
    assert_eq!(r.kept.to_vec2::<f32>()?, [[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]]);
    Ok(())
}

#[test]
fn groups_route_independently() -> Result<()> {
    // Everyone wants e0; groups of 2 with C = ceil(2*0.5/2) = 1 keep the first of each group.
    let p = gates(&[&[0.9f32, 0.1][..]; 5])?;
    let s = spec(2, 1, 0.5, false);
    let r = grouped(&p, &s, Some(2))?;
    assert_eq!((r.groups, r.capacity, r.slots_per_expert), (3, 1, 3));
    assert_eq!(r.experts.to_vec2::<u32>()?, [[0], [2], [0], [2], [0]]);
    assert_eq!(r.dispatch.to_vec2::<u32>()?, [[0, 6, 1, 6, 2]]);
    // One group of 5: C = ceil(5*0.5/2) = 2.
    assert_eq!(experts_of(&p, &s, None)?, [[0], [0], [2], [2], [2]]);
    // The last, smaller group gets the capacity of its own size: groups (4, 1) with c = 0.25
    // give C = 1 for both; with BPR inside each group the best token wins.
    let p = gates(&[
        &[0.6, 0.4],
        &[0.7, 0.3],
        &[0.9, 0.1],
        &[0.8, 0.2],
        &[0.55, 0.45],
    ])?;
    assert_eq!(
        experts_of(&p, &spec(2, 1, 0.5, true), Some(4))?,
        [[2], [2], [0], [2], [0]]
    );
    Ok(())
}

#[test]
fn routing_rejects_bad_shapes() -> Result<()> {
    let p = gates(&[&[0.5, 0.5]])?;
    assert!(grouped(&p, &spec(3, 1, 1.0, true), None).is_err());
    assert!(grouped(&p, &spec(2, 3, 1.0, true), None).is_err());
    let (moe, _) = layer(&cfg(2, 1, 1.0, true))?;
    let x = Tensor::zeros((3, 4), DType::F64, &Device::Cpu)?;
    let tokens = RoutedTokens::consecutive(TokenCounts { image: 2, text: 2 }, None)?;
    assert!(moe.forward(&x, &tokens, RouteMode::Eval).is_err());
    let mut bad = cfg(2, 1, 1.0, true);
    bad.routing.capacity.train = 0.0;
    assert!(layer(&bad).is_err());
    Ok(())
}

/// Experts that ignore their input and output `b2[e]`: y[t] = sum_k gate * b2[expert].
fn constant_experts(map: &VarMap, e: usize) -> Result<Tensor> {
    for name in ["experts.w1", "experts.w2", "experts.b1"] {
        let v = var(map, name);
        v.set(&v.zeros_like()?)?;
    }
    let b2 = Tensor::from_vec(
        (0..e * 4).map(|i| (i + 1) as f64).collect::<Vec<_>>(),
        (e, 4),
        &Device::Cpu,
    )?;
    var(map, "experts.b2").set(&b2)?;
    Ok(b2)
}

#[test]
fn combine_uses_raw_gates_and_drops_give_zero() -> Result<()> {
    let (e, k) = (3, 2);
    let (moe, map) = layer(&cfg(e, k, 0.5, true))?;
    let b2 = constant_experts(&map, e)?.to_vec2::<f64>()?;
    let x = tensor((5, 4), 3)?;
    let out = forward(&moe, &x, TokenCounts { image: 3, text: 2 }, RouteMode::Eval)?;
    let probs = candle_nn::ops::softmax(&x.matmul(var(&map, "router").as_tensor())?, 1)?
        .to_vec2::<f64>()?;
    let experts = out.experts.to_vec2::<u32>()?;
    let y = out.y.to_vec2::<f64>()?;
    let mut dropped = 0;
    for t in 0..5 {
        let mut want = [0.0; 4];
        for &ex in &experts[t] {
            if ex as usize == e {
                dropped += 1;
                continue;
            }
            for (w, b) in want.iter_mut().zip(&b2[ex as usize]) {
                *w += probs[t][ex as usize] * b;
            }
        }
        for (a, b) in y[t].iter().zip(want) {
            assert!((a - b).abs() < 1e-12, "token {t}: {:?} vs {want:?}", y[t]);
        }
    }
    // C = ceil(5*2*0.5/3) = 2 slots for 10 choices: at least 4 dropped.
    assert!(dropped >= 4, "{dropped} dropped");
    Ok(())
}

/// A batch of prompts alone (text tokens only), every token routed to expert 0: at an eval
/// capacity sized for mixed batches most overflow, while the unlimited default drops none.
#[test]
fn a_router_sending_all_text_to_one_expert_drops_no_prompt_token_at_eval() -> Result<()> {
    let dropped = |capacity_eval: Option<f64>| -> Result<(u64, Vec<Vec<u32>>)> {
        let mut config = cfg(4, 1, 1.0, true);
        config.routing.capacity.eval = capacity_eval;
        let (moe, map) = layer(&config)?;
        let router = var(&map, "router");
        let mut to_first = vec![0.0f64; 4 * 4];
        (0..4).for_each(|i| to_first[i * 4] = 50.0);
        router.set(&Tensor::from_vec(to_first, (4, 4), &Device::Cpu)?)?;
        let x = Tensor::ones((12, 4), DType::F64, &Device::Cpu)?;
        let out = forward(
            &moe,
            &x,
            TokenCounts { image: 0, text: 12 },
            RouteMode::Eval,
        )?;
        let dropped = out.stats.to_host()?.text.dropped;
        Ok((dropped, out.experts.to_vec2::<u32>()?))
    };
    let (limited, _) = dropped(Some(1.0))?;
    assert_eq!(limited, 9, "C = ceil(12 / 4) = 3 slots for 12 tokens");
    let (unlimited, experts) = dropped(None)?;
    assert_eq!(unlimited, 0);
    assert!(experts.iter().all(|e| e == &[0]), "{experts:?}");
    Ok(())
}

/// Without a limit, the host gives each expert the slots its busiest peer needs, not one per
/// token: balanced routing keeps the buffer (and the experts' work) near K * T rows.
#[test]
fn unlimited_capacity_is_the_busiest_experts_load() -> Result<()> {
    let one_hot = |e: usize| -> Vec<f32> { (0..4).map(|j| f32::from(j == e)).collect() };
    let rows: Vec<Vec<f32>> = [0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 0].map(one_hot).to_vec();
    let probs = gates(&rows.iter().map(Vec::as_slice).collect::<Vec<_>>())?;
    let routing = grouped(&probs, &spec(4, 1, f64::INFINITY, true), None)?;
    assert_eq!(
        (routing.capacity, routing.slots_per_expert),
        (4, 4),
        "expert 0 has 4"
    );
    let experts: Vec<Vec<u32>> = routing.experts.to_vec2()?;
    assert!(
        experts.iter().flatten().all(|&x| x < 4),
        "nothing dropped: {experts:?}"
    );
    // Two groups of 6 (experts 0 1 2 3 0 1 and 2 3 0 1 2 0): the busiest expert of either
    // group has 2, fewer than expert 0's 4 over the whole batch.
    let routing = grouped(&probs, &spec(4, 1, f64::INFINITY, true), Some(6))?;
    assert_eq!((routing.capacity, routing.groups), (2, 2));
    let experts: Vec<Vec<u32>> = routing.experts.to_vec2()?;
    assert!(experts.iter().flatten().all(|&x| x < 4), "{experts:?}");
    Ok(())
}

fn run(moe: &Moe, x: &Tensor, mode: RouteMode) -> Result<MoeOutput> {
    forward(moe, x, TokenCounts { image: 5, text: 3 }, mode)
}

#[test]
fn eval_is_deterministic_and_noise_is_keyed() -> Result<()> {
    let mut config = cfg(4, 1, 1.0, true);
    config.routing.noise = 40.0; // std 10: the noise decides the routing
    let (moe, _) = layer(&config)?;
    let x = tensor((8, 4), 5)?;
    let same = |a: &MoeOutput, b: &MoeOutput| -> Result<bool> {
        Ok(a.y.to_vec2::<f64>()? == b.y.to_vec2::<f64>()?
            && a.experts.to_vec2::<u32>()? == b.experts.to_vec2::<u32>()?)
    };
    assert!(same(
        &run(&moe, &x, RouteMode::Eval)?,
        &run(&moe, &x, RouteMode::Eval)?
    )?);
    let train = |seed| {
        run(
            &moe,
            &x,
            RouteMode::Train {
                noise_seed: seed,
                first_example: 0,
            },
        )
    };
    assert!(same(&train(11)?, &train(11)?)?);
    assert!(!same(&train(11)?, &train(12)?)?);
    Ok(())
}

fn host_terms(out: &MoeOutput) -> Result<AuxValues> {
    out.aux.to_host()
}

/// With several routing groups each auxiliary term is the mean of the groups' own terms: the
/// layer run on each group alone gives them. Two examples of 2 patches and 2 text tokens.
#[test]
fn auxiliary_losses_are_averaged_over_routing_groups() -> Result<()> {
    let (moe, _) = layer(&cfg(4, 1, 1.0, true))?;
    let x = tensor((8, 4), 7)?;
    let counts = TokenCounts { image: 4, text: 4 };
    let groups = Groups::of_examples(2, &[2, 2], 1)?;
    let both = RoutedTokens::new(counts, groups, (0..8).collect())?;
    let together = host_terms(&moe.forward(&x, &both, RouteMode::Eval)?)?;
    let mut alone = Vec::new();
    for rows in [[0u32, 1, 4, 5], [2, 3, 6, 7]] {
        let x = x.index_select(&Tensor::new(&rows, &Device::Cpu)?, 0)?;
        let counts = TokenCounts { image: 2, text: 2 };
        let one = RoutedTokens::consecutive(counts, None)?;
        alone.push(host_terms(&moe.forward(&x, &one, RouteMode::Eval)?)?);
    }
    for m in 0..2 {
        let parts = [alone[0].modality.both()[m], alone[1].modality.both()[m]];
        for (i, (name, value)) in together.modality.both()[m]
            .entries()
            .into_iter()
            .enumerate()
        {
            let mean = (parts[0].entries()[i].1 + parts[1].entries()[i].1) / 2.0;
            assert!((value - mean).abs() < 1e-12, "{name}: {value} vs {mean}");
        }
    }
    // The joint balance too: each group's own tokens of both modalities, then the mean.
    let joint = (alone[0].joint.importance + alone[1].joint.importance) / 2.0;
    assert!((together.joint.importance - joint).abs() < 1e-12);
    // The whole batch as one group is another loss: the terms are not linear in the gates.
    let one = RoutedTokens::consecutive(counts, None)?;
    let whole = host_terms(&moe.forward(&x, &one, RouteMode::Eval)?)?;
    assert_ne!(
        whole.modality.image.importance,
        together.modality.image.importance
    );
    Ok(())
}

#[test]
fn uniform_router_losses() -> Result<()> {
    let e = 4;
    let mut config = cfg(e, 1, 2.0, true);
    config.global_experts = spec::PerModality {
        image: 4.0,
        text: 2.0,
    };
    let (moe, map) = layer(&config)?;
    let router = var(&map, "router");
    router.set(&router.zeros_like()?)?;
    let out = run(
        &moe,
        &tensor((8, 4), 1)?,
        RouteMode::Train {
            noise_seed: 3,
            first_example: 0,
        },
    )?;
    let ln_e = (e as f64).ln();
    for terms in host_terms(&out)?.modality.both() {
        assert!((terms.local_entropy - ln_e).abs() < 1e-12);
        assert!(terms.global_entropy.abs() < 1e-12, "S <= E: no global loss");
        assert!(terms.importance.abs() < 1e-12);
        assert!((terms.z_loss - ln_e * ln_e).abs() < 1e-12);
        assert!(terms.load.is_finite());
    }
    let stats = out.stats.to_host()?;
    assert_eq!(stats.image.mean_gate, vec![0.25; 4]);
    assert!((stats.text.global_entropy - ln_e).abs() < 1e-12);
    assert_eq!(
        stats.image.routed.iter().sum::<u64>() + stats.image.dropped,
        5
    );
    assert_eq!(
        stats.text.routed.iter().sum::<u64>() + stats.text.dropped,
        3
    );
    Ok(())
}

#[test]
fn one_hot_router_losses() -> Result<()> {
    let e = 3;
    let mut config = cfg(e, 1, 1.0, false);
    config.global_experts = spec::PerModality {
        image: 3.0,
        text: 1.0,
    };
    let (moe, map) = layer(&config)?;
    // Every token sends a huge logit to expert 1.
    let mut w = vec![0.0; 4 * e];
    w[1] = 1e3;
    var(&map, "router").set(&Tensor::from_vec(w, (4, e), &Device::Cpu)?)?;
    let x = Tensor::ones((8, 4), DType::F64, &Device::Cpu)?;
    let out = run(&moe, &x, RouteMode::Eval)?;
    let terms = host_terms(&out)?;
    assert!(terms.modality.image.local_entropy.abs() < 1e-9);
    // All tokens on one expert: H(mean p) = 0, so the loss is ln S.
    assert!((terms.modality.image.global_entropy - 3f64.ln()).abs() < 1e-9);
    assert!(
        terms.modality.text.global_entropy.abs() < 1e-9,
        "S = 1 asks for nothing"
    );
    // Importance [n, 0, 0]: mean n/3, variance 2n^2/9: CV^2 = 2.
    assert!((terms.modality.image.importance - 2.0).abs() < 1e-9);
    assert_eq!(terms.modality.image.load, 0.0, "no load loss in evaluation");
    // C = ceil(8/3) = 3: three image tokens kept on expert 1, the rest dropped.
    let stats = out.stats.to_host()?;
    assert_eq!(
        (stats.image.routed.clone(), stats.image.dropped),
        (vec![0, 3, 0], 2)
    );
    assert_eq!(
        (stats.text.routed.clone(), stats.text.dropped),
        (vec![0, 0, 0], 3)
    );
    Ok(())
}

#[test]
fn empty_modality_contributes_zero() -> Result<()> {
    let (moe, _) = layer(&cfg(4, 2, 1.0, true))?;
    let x = tensor((6, 4), 9)?;
    let out = forward(
        &moe,
        &x,
        TokenCounts { image: 6, text: 0 },
        RouteMode::Train {
            noise_seed: 1,
            first_example: 0,
        },
    )?;
    let terms = host_terms(&out)?;
    for (_, v) in terms.modality.text.entries() {
        assert_eq!(*v, 0.0);
    }
    for (name, v) in terms.modality.image.entries() {
        assert!(v.is_finite(), "{name} = {v}");
    }
    let mut weights = AuxWeights {
        modality: PerModality {
            image: LossTerms::default(),
            text: LossTerms {
                local_entropy: 1.0,
                global_entropy: 1.0,
                importance: 1.0,
                load: 1.0,
                z_loss: 1.0,
            },
        },
        ..Aux::default()
    };
    assert_eq!(terms.weighted_total(&weights), 0.0);
    weights.modality.image.local_entropy = 0.5;
    let total = terms.weighted_total(&weights);
    assert!((total - 0.5 * terms.modality.image.local_entropy).abs() < 1e-12);
    Ok(())
}

/// The paper's argument against modality-agnostic balancing: image tokens spread over
/// experts 1-3 and every text token on expert 0 balance all four experts jointly (importance
/// 0), while text alone has collapsed (importance 3). Only `scope: per_modality` sees it.
#[test]
fn joint_balance_holds_while_text_collapses() -> Result<()> {
    let (moe, map) = layer(&cfg(4, 1, 1.0, false))?;
    // Row r of x is the unit vector of its expert; the router scales it to a one-hot gate.
    let eye: Vec<f64> = (0..16)
        .map(|i| if i % 5 == 0 { 1e3 } else { 0.0 })
        .collect();
    var(&map, "router").set(&Tensor::from_vec(eye, (4, 4), &Device::Cpu)?)?;
    let expert_of_row = (0..12).map(|r| 1 + r % 3).chain([0; 4]);
    let mut x = vec![0.0; 16 * 4];
    for (row, expert) in expert_of_row.enumerate() {
        x[row * 4 + expert] = 1.0;
    }
    let x = Tensor::from_vec(x, (16, 4), &Device::Cpu)?;
    let out = forward(
        &moe,
        &x,
        TokenCounts { image: 12, text: 4 },
        RouteMode::Eval,
    )?;
    let terms = host_terms(&out)?;
    assert!(terms.joint.importance.abs() < 1e-9, "{:?}", terms.joint);
    // Text [1, 0, 0, 0]: mean 1/4, variance 3/16, CV^2 = 3; image [0, 1/3, 1/3, 1/3]: 1/3.
    assert!((terms.modality.text.importance - 3.0).abs() < 1e-9);
    assert!((terms.modality.image.importance - 1.0 / 3.0).abs() < 1e-9);
    let loss = |scope: Scope| -> Result<f64> {
        let mut aux = AuxSpec {
            local_entropy: spec::PerModality::both(0.0),
            global_entropy: spec::PerModality::both(0.0),
            importance: 1.0,
            ..AuxSpec::default()
        };
        aux.scope.importance = scope;
        Ok(terms.weighted_total(&aux_weights(&aux)))
    };
    assert!(loss(Scope::Joint)?.abs() < 1e-9);
    assert!((loss(Scope::PerModality)? - (3.0 + 1.0 / 3.0)).abs() < 1e-9);
    Ok(())
}

/// Central-difference check of `d loss / d var` for every element of `var`.
fn check_gradient(var: &Var, loss: &dyn Fn() -> Result<Tensor>) -> Result<()> {
    let analytic = loss()?
        .backward()?
        .get(var.as_tensor())
        .expect("gradient")
        .flatten_all()?;
    let analytic = analytic.to_vec1::<f64>()?;
    let base = var.as_tensor().flatten_all()?.to_vec1::<f64>()?;
    let shape = var.shape().clone();
    let h = 1e-6;
    for (i, a) in analytic.iter().enumerate() {
        let eval = |delta: f64| -> Result<f64> {
            let mut v = base.clone();
            v[i] += delta;
            var.set(&Tensor::from_vec(v, shape.clone(), &Device::Cpu)?)?;
            loss()?.to_scalar::<f64>()
        };
        let numeric = (eval(h)? - eval(-h)?) / (2.0 * h);
        let tolerance = 1e-6 * (1.0 + numeric.abs());
        assert!(
            (a - numeric).abs() < tolerance,
            "element {i}: {a} vs {numeric}"
        );
    }
    var.set(&Tensor::from_vec(base, shape, &Device::Cpu)?)?;
    Ok(())
}

#[test]
fn finite_difference_gradients() -> Result<()> {
    let mut config = cfg(3, 2, 0.75, true);
    config.global_experts = spec::PerModality {
        image: 3.0,
        text: 3.0,
    };
    // Every kind of term, each modality's and the joint ones, with weights of their own.
    config.aux = AuxWeights {
        modality: PerModality {
            image: LossTerms {
                local_entropy: 1.0,
                global_entropy: 1.0,
                importance: 1.0,
                z_loss: 1.0,
                ..LossTerms::default()
            },
            text: LossTerms {
                local_entropy: 0.5,
                global_entropy: 1.0,
                load: 1.0,
                ..LossTerms::default()
            },
        },
        joint: Balance {
            importance: 0.3,
            load: 0.7,
        },
    };
    let (moe, map) = layer(&config)?;
    let x = Var::from_tensor(&tensor((7, 4), 21)?)?;
    let probe = tensor((7, 4), 22)?;
    let tokens = TokenCounts { image: 4, text: 3 };
    let mode = RouteMode::Train {
        noise_seed: 5,
        first_example: 0,
    };
    let forward = || forward(&moe, x.as_tensor(), tokens, mode);
    let y_loss = || forward()?.y.mul(&probe)?.sum_all();
    let aux_loss = || Ok(forward()?.aux_loss);
    let router = var(&map, "router");
    check_gradient(&router, &y_loss)?;
    check_gradient(&x, &y_loss)?;
    check_gradient(&router, &aux_loss)?;
    check_gradient(&x, &aux_loss)?;
    Ok(())
}

#[test]
fn every_parameter_gets_a_gradient() -> Result<()> {
    let mut config = cfg(4, 2, 1.0, true);
    config.global_experts = spec::PerModality {
        image: 2.0,
        text: 2.0,
    };
    config.aux = AuxWeights {
        modality: PerModality {
            image: LossTerms {
                local_entropy: 0.01,
                global_entropy: 0.01,
                importance: 0.01,
                load: 0.01,
                z_loss: 0.001,
            },
            text: LossTerms::default(),
        },
        joint: Balance {
            importance: 0.01,
            load: 0.01,
        },
    };
    let (moe, map) = layer(&config)?;
    let x = tensor((12, 4), 31)?;
    let out = forward(
        &moe,
        &x,
        TokenCounts { image: 8, text: 4 },
        RouteMode::Train {
            noise_seed: 2,
            first_example: 0,
        },
    )?;
    let loss = (out.y.sqr()?.sum_all()? + out.aux_loss)?;
    let grads = loss.backward()?;
    for (name, v) in map.data().lock().unwrap().iter() {
        let g = grads
            .get(v.as_tensor())
            .expect("gradient")
            .flatten_all()?
            .to_vec1::<f64>()?;
        assert!(
            g.iter().all(|x| x.is_finite()),
            "{name}: non-finite gradient"
        );
        assert!(g.iter().any(|x| *x != 0.0), "{name}: zero gradient");
    }
    Ok(())
}

/// The routing rules written as a plain host loop.
fn reference_route(
    p: &[Vec<f32>],
    k: usize,
    factor: f64,
    group: usize,
    bpr: bool,
) -> Vec<Vec<u32>> {
    let e = p[0].len();
    let chosen: Vec<Vec<usize>> = p
        .iter()
        .map(|row| {
            let mut idx: Vec<usize> = (0..e).collect();
            idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
            idx.truncate(k);
            idx
        })
        .collect();
    let mut out = vec![vec![e as u32; k]; p.len()];
    for start in (0..p.len()).step_by(group) {
        let end = (start + group).min(p.len());
        let cap = capacity(end - start, k, factor, e);
        let mut order: Vec<usize> = (start..end).collect();
        if bpr {
            order.sort_by(|&a, &b| p[b][chosen[b][0]].total_cmp(&p[a][chosen[a][0]]));
        }
        let mut used = vec![0; e];
        for choice in 0..k {
            for &t in &order {
                let ex = chosen[t][choice];
                if used[ex] < cap {
                    used[ex] += 1;
                    out[t][choice] = ex as u32;
                }
            }
        }
    }
    out
}

#[test]
fn routing_matches_a_host_loop_on_random_gates() -> Result<()> {
    let mut seed = 100;
    for (t, e) in [(37, 3), (300, 8)] {
        for k in [1, 2] {
            for factor in [0.5, 1.0, 1.25] {
                for group in [None, Some(64)] {
                    for bpr in [false, true] {
                        seed += 1;
                        let logits = tensor((t, e), seed)?.affine(3.0, 0.0)?;
                        let p = candle_nn::ops::softmax(&logits, 1)?.to_dtype(DType::F32)?;
                        let s = RouteSpec {
                            experts: e,
                            top_k: k,
                            capacity_factor: factor,
                            bpr,
                        };
                        let want =
                            reference_route(&p.to_vec2()?, k, factor, group.unwrap_or(t), bpr);
                        assert_eq!(experts_of(&p, &s, group)?, want, "{s:?} T={t}");
                    }
                }
            }
        }
    }
    Ok(())
}

/// V-MoE's inference capacity: at capacity 0.5 with BPR every expert keeps its
/// highest-gate tokens, so each dropped token's top-1 gate is below that of every token its
/// expert kept; without BPR the drops follow the tokens' order instead.
#[test]
fn capped_bpr_drops_exactly_the_lowest_gate_tokens() -> Result<()> {
    let (experts, tokens) = (4, 64);
    let (moe, map) = layer(&cfg(experts, 1, 1.0, true))?;
    let x = tensor((tokens, 4), 21)?;
    let probs: Vec<Vec<f64>> =
        candle_nn::ops::softmax(&x.matmul(&var(&map, "router"))?, 1)?.to_vec2()?;
    let counts = TokenCounts {
        image: tokens,
        text: 0,
    };
    let slots = capacity(tokens, 1, 0.5, experts);
    let routed = |bpr: bool| -> Result<Vec<u32>> {
        let mode = RouteMode::Capped {
            capacity_factor: 0.5,
            bpr,
        };
        let chosen = forward(&moe, &x, counts, mode)?.experts.to_vec2::<u32>()?;
        Ok(chosen.into_iter().map(|row| row[0]).collect())
    };
    let top1 = |t: usize| {
        let row = &probs[t];
        let best = (0..experts)
            .max_by(|&a, &b| row[a].total_cmp(&row[b]))
            .unwrap();
        (best, row[best])
    };
    let with_bpr = routed(true)?;
    let mut dropped_any = false;
    for e in 0..experts {
        let mine: Vec<usize> = (0..tokens).filter(|&t| top1(t).0 == e).collect();
        let kept: Vec<f64> = (mine.iter())
            .filter(|&&t| with_bpr[t] == e as u32)
            .map(|&t| top1(t).1)
            .collect();
        let dropped: Vec<f64> = (mine.iter())
            .filter(|&&t| with_bpr[t] == experts as u32)
            .map(|&t| top1(t).1)
            .collect();
        assert_eq!(kept.len() + dropped.len(), mine.len(), "expert {e}");
        assert_eq!(
            kept.len(),
            mine.len().min(slots),
            "expert {e} keeps its capacity"
        );
        let lowest_kept = kept.iter().copied().fold(f64::INFINITY, f64::min);
        let highest_dropped = dropped.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        assert!(
            highest_dropped <= lowest_kept,
            "expert {e} dropped a gate of {highest_dropped} and kept one of {lowest_kept}"
        );
        dropped_any |= !dropped.is_empty();
    }
    assert!(
        dropped_any,
        "capacity 0.5 dropped nothing: the test proves nothing"
    );
    // Without BPR the first tokens of each expert are kept, whatever their gates.
    let in_order = routed(false)?;
    for e in 0..experts {
        let mine: Vec<usize> = (0..tokens).filter(|&t| top1(t).0 == e).collect();
        for (rank, &t) in mine.iter().enumerate() {
            let kept = in_order[t] == e as u32;
            assert_eq!(
                kept,
                rank < slots,
                "expert {e}, its token {rank} without BPR"
            );
        }
    }
    Ok(())
}
