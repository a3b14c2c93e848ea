//! The whole model: gradients reach every parameter, padding is ignored, the plan counts
//! parameters exactly, a tiny model overfits a batch, and bf16 mixed precision (on the CPU,
//! through candle's generic ops) tracks f32.

mod support;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use limoe_core::spec::{Arch, ModelSpec, Pooling};
use limoe_model::moe::RouteMode;
use limoe_model::plan::cost;
use limoe_model::random::Stream;
use limoe_model::{Images, InPrecision, LOG_LOGIT_SCALE, Model, Params, Texts};
use support::{BATCH, batch, config, examples};

fn build(config: &ModelSpec, seed: u64) -> (Model, Params) {
    let params = Params::new(seed);
    let model = Model::new(config, &params, &Device::Cpu).expect("model");
    (model, params)
}

#[test]
fn every_parameter_gets_a_finite_nonzero_gradient() {
    for (arch, pooling) in [
        (Arch::Limoe, Pooling::Mean),
        (Arch::Limoe, Pooling::Map),
        (Arch::Dense, Pooling::Mean),
        (Arch::TwoTower, Pooling::Map),
    ] {
        let config = config(arch, pooling);
        let (model, params) = build(&config, 1);
        let (images, texts) = batch(&config, 2);
        let output = model
            .forward(
                &images,
                &texts,
                RouteMode::Train {
                    noise_seed: 3,
                    first_example: 0,
                },
            )
            .expect("forward");
        let grads = output.loss.backward().expect("backward");
        for (name, var) in params.vars() {
            let grad = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("{arch:?}/{pooling:?}: `{name}` has no gradient"));
            let values: Vec<f32> = grad.flatten_all().unwrap().to_vec1().unwrap();
            assert!(
                values.iter().all(|v| v.is_finite()),
                "{arch:?}: `{name}` has a non-finite gradient"
            );
            assert!(
                values.iter().any(|v| *v != 0.0),
                "{arch:?}/{pooling:?}: `{name}` has an all-zero gradient"
            );
        }
    }
}

/// Routing groups of whole examples, and noise keyed by an example's index in the global
/// batch: the halves of a batch, routed apart as two ranks route them, get the experts and
/// embeddings of the whole batch routed in one process.
#[test]
fn routing_does_not_depend_on_how_the_batch_is_split() {
    let mut config = config(Arch::Limoe, Pooling::Mean);
    let per_example = config.patches() + config.text_length;
    config.moe.group_size = Some(2 * per_example);
    config.moe.noise = 40.0; // std 10: the noise decides the routing
    let (model, _) = build(&config, 1);
    let whole = batch(&config, 2);
    let half = BATCH / 2;
    let train = |first_example| RouteMode::Train {
        noise_seed: 9,
        first_example,
    };
    let encode = |(images, texts): &(Images, Texts), mode| {
        model
            .encode(Some(images), Some(texts), mode)
            .expect("encode")
    };
    let one = encode(&whole, train(0));
    let parts = [
        encode(&examples(&config, &whole, 0..half), train(0)),
        encode(&examples(&config, &whole, half..BATCH), train(half as u64)),
    ];
    let image_rows = half * config.patches();
    for (b, block) in one.routing.iter().enumerate() {
        let experts: Vec<Vec<u32>> = block.experts.to_vec2().expect("experts");
        let (mut image, mut text) = (Vec::new(), Vec::new());
        for part in &parts {
            let rows: Vec<Vec<u32>> = part.routing[b].experts.to_vec2().expect("experts");
            image.extend_from_slice(&rows[..image_rows]);
            text.extend_from_slice(&rows[image_rows..]);
        }
        image.extend(text);
        assert_eq!(experts, image, "block {}", block.block);
    }
    for (name, whole, halves) in [
        (
            "image",
            &one.image,
            parts.each_ref().map(|p| p.image.clone()),
        ),
        ("text", &one.text, parts.each_ref().map(|p| p.text.clone())),
    ] {
        let halves: Vec<Tensor> = halves.into_iter().map(|t| t.expect("embedding")).collect();
        let split = Tensor::cat(&halves, 0).expect("cat");
        let gap: f32 = (whole.as_ref().expect("embedding") - split)
            .and_then(|d| d.abs()?.max_all()?.to_scalar())
            .expect("gap");
        assert!(gap < 1e-5, "{name} embeddings differ by {gap}");
    }
    // The second half keyed as if it came first routes differently: the key is what matters.
    let misplaced = encode(&examples(&config, &whole, half..BATCH), train(0));
    assert_ne!(
        misplaced.routing[0]
            .experts
            .to_vec2::<u32>()
            .expect("experts"),
        parts[1].routing[0]
            .experts
            .to_vec2::<u32>()
            .expect("experts")
    );
}

#[test]
fn plan_counts_exactly_the_parameters_the_model_creates() {
    for (arch, pooling) in [
        (Arch::Limoe, Pooling::Mean),
        (Arch::Limoe, Pooling::Map),
        (Arch::Dense, Pooling::Map),
        (Arch::TwoTower, Pooling::Mean),
    ] {
        let config = config(arch, pooling);
        let (_, params) = build(&config, 0);
        assert_eq!(
            cost(&config, BATCH, BATCH).total_params,
            params.count(),
            "{arch:?}/{pooling:?}"
        );
    }
    let limoe = cost(&config(Arch::Limoe, Pooling::Mean), BATCH, BATCH);
    let dense = cost(&config(Arch::Dense, Pooling::Mean), BATCH, BATCH);
    // Top-2 of 4 experts: more parameters in total, but per token only one extra MLP
    // (and the router) in the one MoE block.
    assert!(limoe.total_params > limoe.active_params);
    assert_eq!(
        limoe.active_params - dense.active_params,
        32 * 4 + (32 * 64 + 64 + 64 * 32 + 32)
    );
}

#[test]
fn padding_tokens_change_nothing() {
    for arch in [Arch::Limoe, Arch::TwoTower] {
        let config = config(arch, Pooling::Map);
        let (model, _) = build(&config, 4);
        let (images, texts) = batch(&config, 5);
        let ids: Vec<u32> = texts.tokens.flatten_all().unwrap().to_vec1().unwrap();
        let mask: Vec<bool> = (0..BATCH * config.text_length)
            .map(|i| i % config.text_length < 2 + (i / config.text_length) % 4)
            .collect();
        let scrambled: Vec<u32> = ids
            .iter()
            .zip(&mask)
            .map(|(&id, &real)| if real { id } else { 63 - id % 7 })
            .collect();
        let other = Texts::new(
            scrambled,
            &mask,
            BATCH,
            config.text_length,
            config.vocab_size,
            &Device::Cpu,
        )
        .unwrap();
        let embed = |texts: &Texts| -> Vec<f32> {
            let encoded = model
                .encode(Some(&images), Some(texts), RouteMode::Eval)
                .unwrap();
            encoded
                .text
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap()
        };
        let (a, b) = (embed(&texts), embed(&other));
        let worst = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(
            worst < 1e-5,
            "{arch:?}: padding changed an embedding by {worst}"
        );
    }
}

#[test]
fn initialisation_is_seeded() {
    let config = config(Arch::Limoe, Pooling::Mean);
    let values = |seed| -> Vec<Vec<f32>> {
        build(&config, seed)
            .1
            .vars()
            .into_iter()
            .map(|(_, v)| v.flatten_all().unwrap().to_vec1().unwrap())
            .collect()
    };
    assert_eq!(values(9), values(9));
    assert_ne!(values(9), values(10));
}

#[test]
fn a_logit_scale_past_the_bound_still_gets_a_gradient() {
    // The trainer clamps the parameter after each step; the forward pass does not, so a
    // scale that overshot the bound can still be brought down.
    let config = config(Arch::Dense, Pooling::Mean);
    let (model, params) = build(&config, 0);
    let vars = params.vars();
    let (_, log_scale) = vars.iter().find(|(n, _)| n == LOG_LOGIT_SCALE).unwrap();
    let overshot = Tensor::new(500f32.ln(), &Device::Cpu).unwrap();
    log_scale.set(&overshot).unwrap();
    let scale: f32 = model.logit_scale().unwrap().to_scalar().unwrap();
    assert!((scale - 500.0).abs() < 1e-2, "scale {scale}");
    let (images, texts) = batch(&config, 2);
    let output = model.forward(&images, &texts, RouteMode::Eval).unwrap();
    let grads = output.loss.backward().unwrap();
    let grad: f32 = grads
        .get(log_scale.as_tensor())
        .unwrap()
        .to_scalar()
        .unwrap();
    assert!(grad != 0.0 && grad.is_finite(), "gradient {grad}");
}

#[test]
fn eval_encoding_is_deterministic() {
    let config = config(Arch::Limoe, Pooling::Mean);
    let (model, _) = build(&config, 6);
    let (images, texts) = batch(&config, 7);
    let run = || -> Vec<f32> {
        let out = model.forward(&images, &texts, RouteMode::Eval).unwrap();
        out.logits.flatten_all().unwrap().to_vec1().unwrap()
    };
    assert_eq!(run(), run());
}

#[test]
fn a_tiny_model_overfits_a_batch() {
    for arch in [Arch::Limoe, Arch::Dense, Arch::TwoTower] {
        let config = config(arch, Pooling::Mean);
        let (model, params) = build(&config, 11);
        let (images, texts) = batch(&config, 12);
        let vars: Vec<Var> = params.vars().into_iter().map(|(_, v)| v).collect();
        let mut optimizer = AdamW::new(
            vars,
            ParamsAdamW {
                lr: 3e-3,
                weight_decay: 0.0,
                ..ParamsAdamW::default()
            },
        )
        .unwrap();
        let mut last = f32::INFINITY;
        for step in 0..150 {
            let output = model
                .forward(
                    &images,
                    &texts,
                    RouteMode::Train {
                        noise_seed: step,
                        first_example: 0,
                    },
                )
                .unwrap();
            last = output.objective.to_scalar().unwrap();
            optimizer.backward_step(&output.loss).unwrap();
        }
        let output = model.forward(&images, &texts, RouteMode::Eval).unwrap();
        let (i2t, t2i) = limoe_model::contrastive::accuracy(&output.logits).unwrap();
        assert_eq!((i2t, t2i), (1.0, 1.0), "{arch:?}: final train loss {last}");
    }
}

#[test]
fn contrastive_gradient_matches_finite_differences() {
    let device = Device::Cpu;
    let mut stream = Stream::new(21);
    let mut draw = |n: usize| -> Vec<f64> { (0..n).map(|_| stream.normal()).collect() };
    let image = Var::from_vec(draw(12), (4, 3), &device).unwrap();
    let text = Tensor::from_vec(draw(12), (4, 3), &device).unwrap();
    let scale = Tensor::new(3.0f64, &device).unwrap();
    let loss = |image: &Tensor| -> Tensor {
        let image = limoe_ops::l2_normalize(image).unwrap();
        let text = limoe_ops::l2_normalize(&text).unwrap();
        let logits = limoe_model::contrastive::logits(&image, &text, &scale).unwrap();
        limoe_model::contrastive::contrastive_loss(&logits).unwrap()
    };
    let grads = loss(image.as_tensor()).backward().unwrap();
    let analytic: Vec<f64> = grads
        .get(image.as_tensor())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let base: Vec<f64> = image.flatten_all().unwrap().to_vec1().unwrap();
    let eps = 1e-6;
    for i in 0..base.len() {
        let at = |delta: f64| -> f64 {
            let mut v = base.clone();
            v[i] += delta;
            let t = Tensor::from_vec(v, (4, 3), &device).unwrap();
            loss(&t).to_dtype(DType::F64).unwrap().to_scalar().unwrap()
        };
        let numeric = (at(eps) - at(-eps)) / (2.0 * eps);
        assert!(
            (numeric - analytic[i]).abs() < 1e-6,
            "element {i}: numeric {numeric}, analytic {}",
            analytic[i]
        );
    }
}

/// One training pass of `model`: its loss, and every variable's gradient flattened in name
/// order.
fn training_pass(config: &ModelSpec, model: &Model, params: &Params) -> (f64, Vec<Vec<f32>>) {
    let (images, texts) = batch(config, 2);
    let mode = RouteMode::Train {
        noise_seed: 3,
        first_example: 0,
    };
    let output = model.forward(&images, &texts, mode).expect("forward");
    assert_eq!(
        output.loss.dtype(),
        DType::F32,
        "the loss is f32 in every precision"
    );
    let grads = output.loss.backward().expect("backward");
    let gradients = (params.vars().into_iter())
        .map(|(name, var)| {
            let grad = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("`{name}` has no gradient"));
            assert_eq!(
                grad.dtype(),
                DType::F32,
                "`{name}`: the master weights are f32"
            );
            grad.flatten_all().and_then(|g| g.to_vec1()).expect("grad")
        })
        .collect();
    let loss = output.loss.to_scalar::<f32>().expect("loss") as f64;
    (loss, gradients)
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b)).max(f64::MIN_POSITIVE)
}

#[test]
fn a_bf16_step_tracks_the_f32_step() {
    for (arch, pooling) in [(Arch::Limoe, Pooling::Map), (Arch::Dense, Pooling::Mean)] {
        let config = config(arch, pooling);
        let params = Params::new(1);
        let model = Model::new(&config, &params, &Device::Cpu).expect("model");
        assert!(matches!(
            model.in_precision(DType::F32).expect("f32"),
            InPrecision::Same(_)
        ));
        let bf16 = model.in_precision(DType::BF16).expect("bf16");
        let (f32_loss, f32_grads) = training_pass(&config, &model, &params);
        let (bf16_loss, bf16_grads) = training_pass(&config, &bf16, &params);
        // bf16 keeps 8 significant bits (relative rounding 2^-9 ~ 0.2%); measured here: the
        // loss 0.04% (LIMoE) and 0.2% (dense) off f32's, the gradients at cosine 0.9997 and
        // 0.99993. The bounds leave 5x room and still catch an f32 leak or a wrong cast.
        let off = (bf16_loss - f32_loss).abs() / f32_loss.abs();
        assert!(off > 0.0, "{arch:?}: the bf16 model computed in f32");
        assert!(
            off < 0.01,
            "{arch:?}: bf16 loss {bf16_loss} vs f32 {f32_loss} ({:.2}%)",
            off * 100.0
        );
        let all = |grads: &[Vec<f32>]| grads.concat();
        let agreement = cosine(&all(&f32_grads), &all(&bf16_grads));
        assert!(
            agreement > 0.995,
            "{arch:?}: bf16 gradients point elsewhere (cosine {agreement})"
        );
    }
}

/// The cast copies are taken when the bf16 model is built: a model built before an update
/// computes with the old weights, one built after with the new.
#[test]
fn a_bf16_model_reads_the_weights_when_it_is_built() {
    let config = config(Arch::Limoe, Pooling::Mean);
    let params = Params::new(1);
    let model = Model::new(&config, &params, &Device::Cpu).expect("model");
    let encode = |model: &Model| {
        let (images, texts) = batch(&config, 2);
        let encoded = model
            .encode(Some(&images), Some(&texts), RouteMode::Eval)
            .expect("encode");
        let image = encoded.image.expect("image embedding");
        assert_eq!(
            image.dtype(),
            DType::F32,
            "embeddings leave the model in f32"
        );
        image
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .expect("values")
    };
    let before = model.in_precision(DType::BF16).expect("bf16");
    let name = "image_head.norm.shift";
    let (_, var) = (params.vars().into_iter())
        .find(|(var_name, _)| var_name == name)
        .expect("the image head's norm shift");
    let shifted = (var.as_tensor() + 0.5).expect("shift");
    var.set(&shifted).expect("set");
    let after = model.in_precision(DType::BF16).expect("bf16");
    let (stale, fresh) = (encode(&before), encode(&after));
    let f32_now = encode(&model);
    let gap = |a: &[f32], b: &[f32]| -> f32 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    };
    assert!(
        gap(&fresh, &f32_now) < gap(&stale, &f32_now),
        "`{name}` changed, and the bf16 model built after it did not follow"
    );
}
