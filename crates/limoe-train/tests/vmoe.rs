//! V-MoE as a classifier: it learns a separable labelled task in a few dozen steps, with
//! softmax and with sigmoid cross-entropy, a frozen (head-only) pass trains nothing but the
//! logits layer, and the inference-capacity evaluation counts FLOPs by the plan's formula.

use candle_core::{Device, Tensor};
use limoe_core::logs::{Modality, RoutingRow};
use limoe_core::spec::{
    Arch, AuxSpec, Capacity, Classifier, LabelLoss, LogitScale, MIN_VOCAB_SIZE, ModelSpec, MoeSpec,
    PerModality, Pooling, Size,
};
use limoe_model::classify::predicted;
use limoe_model::moe::RouteMode;
use limoe_model::plan::{cost, dropless_expert_tokens, expert_flops_per_token, forward_flops};
use limoe_model::{Images, Model, Params, is_classifier_logits};
use limoe_train::capacity::Spent;
use limoe_train::optim::{AdamW, AdamWConfig};

const CLASSES: usize = 4;

fn vmoe(loss: LabelLoss) -> ModelSpec {
    ModelSpec {
        arch: Arch::Vmoe,
        size: Size::Tiny,
        width: 32,
        depth: 2,
        mlp_dim: 64,
        heads: 2,
        patch: 4,
        image_size: 16,
        channels: 3,
        text_length: 6,
        vocab_size: MIN_VOCAB_SIZE,
        embed_dim: None,
        pooling: PerModality::both(Pooling::Mean),
        moe: MoeSpec {
            experts: 4,
            top_k: 1,
            every: Some(2),
            last: None,
            capacity: Capacity::default(),
            bpr: true,
            noise: 1.0,
            group_size: None,
        },
        aux: AuxSpec {
            local_entropy: PerModality::both(0.0),
            global_entropy: PerModality::both(0.0),
            importance: 0.01,
            load: 0.01,
            ..AuxSpec::default()
        },
        logit_scale: LogitScale::default(),
        classifier: Some(Classifier {
            classes: CLASSES,
            loss,
        }),
    }
}

/// `n` images of class `i % CLASSES`: class k lights the values v of every patch with
/// v % CLASSES == k, under noise.
fn batch(spec: &ModelSpec, n: usize, seed: u64) -> (Images, Tensor) {
    let (patches, dim) = (spec.patches(), spec.patch_dim());
    let mut stream = limoe_model::random::Stream::new(seed);
    let mut values = Vec::with_capacity(n * patches * dim);
    for i in 0..n {
        for p in 0..patches {
            let light = if p % CLASSES == i % CLASSES {
                1.0
            } else {
                -1.0
            };
            for _ in 0..dim {
                values.push(light + 0.5 * stream.normal() as f32);
            }
        }
    }
    let images = Images::new(values, n, patches, dim, &Device::Cpu).unwrap();
    let labels: Vec<u32> = (0..n).map(|i| (i % CLASSES) as u32).collect();
    (images, Tensor::new(labels, &Device::Cpu).unwrap())
}

fn train_mode(step: u64) -> RouteMode {
    RouteMode::Train {
        noise_seed: step,
        first_example: 0,
    }
}

/// Trains `steps` AdamW steps of 32 images and returns the held-out accuracy.
fn accuracy_after(spec: &ModelSpec, steps: u64) -> f64 {
    let params = Params::new(7);
    let model = Model::new(spec, &params, &Device::Cpu).unwrap();
    let vars = params.vars();
    let mut optimizer = AdamW::new(&vars, AdamWConfig::default()).unwrap();
    for step in 1..=steps {
        let (images, labels) = batch(spec, 32, step);
        let output = model
            .forward_labelled(&images, &labels, train_mode(step), false)
            .unwrap();
        assert!(output.logit_scale.is_none());
        optimizer
            .step(&output.loss.backward().unwrap(), 1e-2, 1.0)
            .unwrap();
    }
    let (images, labels) = batch(spec, 64, 1_000);
    let encoded = model.encode(Some(&images), None, RouteMode::Eval).unwrap();
    let predictions = predicted(&encoded.class_logits.unwrap()).unwrap();
    let labels: Vec<u32> = labels.to_vec1().unwrap();
    let hits = predictions.iter().zip(&labels).filter(|(p, l)| p == l);
    hits.count() as f64 / labels.len() as f64
}

#[test]
fn the_classifier_learns_a_separable_task_in_a_few_dozen_steps() {
    let softmax = accuracy_after(&vmoe(LabelLoss::Softmax), 40);
    assert!(
        softmax >= 0.9,
        "softmax: accuracy {softmax} after 40 steps (chance 0.25)"
    );
    // One binary problem per class leaves its plateau at the base rate later: at 120 steps
    // it is well above chance, not yet perfect.
    let sigmoid = accuracy_after(&vmoe(LabelLoss::Sigmoid), 120);
    assert!(
        sigmoid >= 0.5,
        "sigmoid: accuracy {sigmoid} after 120 steps (chance 0.25)"
    );
    let vit = ModelSpec {
        arch: Arch::Vit,
        ..vmoe(LabelLoss::Softmax)
    };
    assert!(accuracy_after(&vit, 40) >= 0.9, "the dense ViT learns too");
}

#[test]
fn a_frozen_pass_sends_gradient_to_the_logits_layer_alone() {
    let spec = vmoe(LabelLoss::Softmax);
    let params = Params::new(3);
    let model = Model::new(&spec, &params, &Device::Cpu).unwrap();
    let (images, labels) = batch(&spec, 8, 1);
    for frozen in [true, false] {
        let output = model
            .forward_labelled(&images, &labels, train_mode(1), frozen)
            .unwrap();
        let grads = output.loss.backward().unwrap();
        for (name, var) in params.vars() {
            let head = is_classifier_logits(&name);
            let reached = grads.get(var.as_tensor()).is_some();
            // The zero-initialised logits layer passes no gradient below it at step 0 either
            // way, so the unfrozen pass is checked on the head alone.
            if frozen || head {
                assert_eq!(reached, head, "{name}, frozen {frozen}");
            }
        }
    }
}

fn routing_row(block: i32, modality: Modality, tokens: i64, dropped: i64) -> RoutingRow {
    RoutingRow {
        step: 0,
        split: "test".into(),
        block,
        modality,
        expert: 0,
        tokens,
        dropped,
        mean_gate: 0.0,
        local_entropy: 0.0,
        global_entropy: 0.0,
    }
}

#[test]
fn flops_spent_at_a_capacity_are_the_plans_less_the_dropped_assignments() {
    let spec = vmoe(LabelLoss::Softmax);
    assert_eq!((spec.patches(), spec.active_moe_blocks()), (16, vec![1]));
    // 10 images of 16 patches through MoE block 1: 30 of the 160 assignments dropped, the
    // block's two expert rows both repeating its drop count; text rows are not counted.
    let rows = [
        routing_row(1, Modality::Image, 70, 30),
        routing_row(1, Modality::Image, 60, 30),
        routing_row(1, Modality::Text, 7, 3),
    ];
    let spent = Spent::of(&rows);
    assert_eq!(
        spent,
        Spent {
            kept: 130,
            dropped: 30
        }
    );
    assert_eq!(spent.examples(16), 10.0);
    assert_eq!(spent.dropped_fraction(), 30.0 / 160.0);
    let plan = cost(&spec, 1, 1).step_flops / 3.0;
    let dropless = forward_flops(&spec, 1.0, dropless_expert_tokens(&spec, 1.0));
    assert!(
        (dropless - plan).abs() <= 1e-9 * plan,
        "{dropless} vs {plan}"
    );
    let at_capacity = forward_flops(&spec, 1.0, spent.kept as f64 / 10.0);
    let saved = 3.0 * expert_flops_per_token(&spec);
    assert!((plan - at_capacity - saved).abs() <= 1e-9 * plan);
    assert_eq!(expert_flops_per_token(&spec), 4.0 * 32.0 * 64.0);
}
