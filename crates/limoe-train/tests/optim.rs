//! AdamW against a hand computation, gradient accumulation, clipping and the non-finite guard.

use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};
use limoe_train::clip::{NonFinite, NonFiniteSource, check_and_clip};
use limoe_train::optim::{AdamW, AdamWConfig, GradAccumulator};

fn var(values: &[f32]) -> Var {
    Var::from_slice(values, values.len(), &Device::Cpu).unwrap()
}

fn tensor(values: &[f32]) -> Tensor {
    Tensor::from_slice(values, values.len(), &Device::Cpu).unwrap()
}

fn values(t: &Tensor) -> Vec<f32> {
    t.to_vec1().unwrap()
}

fn assert_close(got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert!(
            (f64::from(*g) - w).abs() <= 1e-6 * w.abs().max(1.0),
            "{got:?} vs {want:?}"
        );
    }
}

/// Two steps by hand in f64: the first normalises the gradient to its sign, the second uses
/// the bias-corrected running averages; weight decay only on the decayed name.
#[test]
fn adamw_two_steps_match_hand_computation_and_skip_excluded_decay() {
    let (w0, b0, frozen0) = ([1.0f32, -2.0, 0.5], [0.3f32, -0.7], [4.0f32]);
    let (w, b, frozen) = (var(&w0), var(&b0), var(&frozen0));
    let params = vec![
        ("encoder.block0.mlp.fc1.weight".to_string(), w.clone()),
        ("encoder.block0.mlp.fc1.bias".to_string(), b.clone()),
        ("encoder.block0.norm1.scale".to_string(), frozen.clone()),
    ];
    let config = AdamWConfig {
        weight_decay: 0.1,
        ..AdamWConfig::default()
    };
    let mut opt = AdamW::new(&params, config).unwrap();
    let grads_w = [[0.5f32, -0.25, 2.0], [-1.0, 0.5, 1.0]];
    let grads_b = [[1.0f32, -3.0], [0.5, 0.5]];
    let lrs = [0.01, 0.02];
    for s in 0..2 {
        let mut grads = GradStore::default();
        grads.insert(w.as_tensor(), tensor(&grads_w[s]));
        grads.insert(b.as_tensor(), tensor(&grads_b[s]));
        opt.step(&grads, lrs[s], 1.0).unwrap();
    }
    assert_eq!(opt.step_count(), 2);

    let adamw = |p0: &[f32], g: [&[f32]; 2], wd: f64| -> Vec<f64> {
        let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8);
        p0.iter()
            .enumerate()
            .map(|(i, &p)| {
                let (mut p, mut m, mut v) = (f64::from(p), 0.0, 0.0);
                for (t, lr) in [(1, lrs[0]), (2, lrs[1])] {
                    let g = f64::from(g[t - 1][i]);
                    m = b1 * m + (1.0 - b1) * g;
                    v = b2 * v + (1.0 - b2) * g * g;
                    let m_hat = m / (1.0 - b1.powi(t as i32));
                    let v_hat = v / (1.0 - b2.powi(t as i32));
                    p -= lr * (m_hat / (v_hat.sqrt() + eps) + wd * p);
                }
                p
            })
            .collect()
    };
    assert_close(&values(&w), &adamw(&w0, [&grads_w[0], &grads_w[1]], 0.1));
    assert_close(&values(&b), &adamw(&b0, [&grads_b[0], &grads_b[1]], 0.0));
    // No gradient: parameter and moments untouched.
    assert_eq!(values(&frozen), frozen0);
    let (m, v) = opt.moments("encoder.block0.norm1.scale").unwrap();
    assert_eq!((values(m), values(v)), (vec![0.0], vec![0.0]));
}

/// The first step is `p - lr * (g / (|g| + eps) + wd p)`: literal numbers.
#[test]
fn adamw_first_step_by_hand() {
    let (w, b) = (var(&[1.0, -2.0]), var(&[0.3]));
    let params = vec![
        ("head.weight".to_string(), w.clone()),
        ("log_logit_scale".to_string(), b.clone()),
    ];
    let config = AdamWConfig {
        weight_decay: 0.1,
        ..AdamWConfig::default()
    };
    let mut opt = AdamW::new(&params, config).unwrap();
    let mut grads = GradStore::default();
    grads.insert(w.as_tensor(), tensor(&[0.5, 0.25]));
    grads.insert(b.as_tensor(), tensor(&[-1.0]));
    opt.step(&grads, 0.01, 1.0).unwrap();
    // 1 - 0.01 * (1 + 0.1 * 1) and -2 - 0.01 * (1 + 0.1 * -2); no decay on the temperature.
    assert_close(&values(&w), &[0.989, -2.008]);
    assert_close(&values(&b), &[0.31]);
}

#[test]
fn grad_scale_equals_pre_scaled_gradients() {
    let (a, b) = (var(&[1.0, 2.0]), var(&[1.0, 2.0]));
    let mut opt_a = AdamW::new(&[("a".into(), a.clone())], AdamWConfig::default()).unwrap();
    let mut opt_b = AdamW::new(&[("a".into(), b.clone())], AdamWConfig::default()).unwrap();
    for (g, scale) in [([3.0f32, -1.0], 0.25), ([1.0, 2.0], 0.5)] {
        let mut ga = GradStore::default();
        ga.insert(a.as_tensor(), tensor(&g));
        opt_a.step(&ga, 0.1, scale).unwrap();
        let mut gb = GradStore::default();
        let pre: Vec<f32> = g.iter().map(|x| x * scale as f32).collect();
        gb.insert(b.as_tensor(), tensor(&pre));
        opt_b.step(&gb, 0.1, 1.0).unwrap();
    }
    assert_eq!(values(&a), values(&b));
}

#[test]
fn accumulator_averages_micro_batches() {
    let (x, y) = (var(&[0.0, 0.0]), var(&[0.0]));
    let params = vec![("x".to_string(), x.clone()), ("y".to_string(), y.clone())];
    let mut acc = GradAccumulator::new(2).unwrap();
    assert!(GradAccumulator::new(0).is_err());
    let mut first = GradStore::default();
    first.insert(x.as_tensor(), tensor(&[1.0, 4.0]));
    acc.add(&params, &first).unwrap();
    assert!(acc.take().is_err());
    let mut second = GradStore::default();
    second.insert(x.as_tensor(), tensor(&[3.0, -2.0]));
    acc.add(&params, &second).unwrap();
    assert!(acc.add(&params, &second).is_err());
    let mean = acc.take().unwrap();
    assert_eq!(values(mean.get(x.as_tensor()).unwrap()), [2.0, 1.0]);
    assert!(mean.get(y.as_tensor()).is_none());
    // The micro-batch gradients themselves are untouched, and the accumulator starts over.
    assert_eq!(values(first.get(x.as_tensor()).unwrap()), [1.0, 4.0]);
    assert_eq!(acc.added(), 0);
}

fn two_params() -> (Vec<(String, Var)>, GradStore) {
    let (a, b) = (var(&[0.0, 0.0]), var(&[0.0]));
    let mut grads = GradStore::default();
    grads.insert(a.as_tensor(), tensor(&[3.0, 4.0]));
    grads.insert(b.as_tensor(), tensor(&[12.0]));
    (vec![("a".into(), a), ("b".into(), b)], grads)
}

#[test]
fn clipping_scales_to_the_exact_norm() {
    let (params, grads) = two_params();
    let clip = check_and_clip(7, 0.5, &params, &grads, Some(6.5), None).unwrap();
    assert_eq!(clip.norm, 13.0);
    assert_eq!(clip.scale, 0.5);
    assert_eq!(clip.norm * clip.scale, 6.5);
    let clip = check_and_clip(7, 0.5, &params, &grads, Some(20.0), None).unwrap();
    assert_eq!((clip.norm, clip.scale), (13.0, 1.0));
    let clip = check_and_clip(7, 0.5, &params, &grads, None, None).unwrap();
    assert_eq!((clip.norm, clip.scale), (13.0, 1.0));
    let clip = check_and_clip(7, 0.5, &params, &GradStore::default(), Some(1.0), None).unwrap();
    assert_eq!((clip.norm, clip.scale), (0.0, 1.0));
}

#[test]
fn non_finite_gradient_and_loss_are_named() {
    let (a, b, c) = (var(&[0.0]), var(&[0.0, 0.0]), var(&[0.0]));
    let params = vec![
        ("a".to_string(), a.clone()),
        ("encoder.block1.moe.router".to_string(), b.clone()),
        ("c".to_string(), c.clone()),
    ];
    let mut grads = GradStore::default();
    grads.insert(a.as_tensor(), tensor(&[1.0]));
    grads.insert(b.as_tensor(), tensor(&[2.0, f32::NAN]));
    grads.insert(c.as_tensor(), tensor(&[f32::INFINITY]));
    let err = check_and_clip(42, 1.0, &params, &grads, Some(1.0), None).unwrap_err();
    let guard = err.downcast_ref::<NonFinite>().unwrap();
    assert_eq!(guard.step, 42);
    assert_eq!(
        guard.source,
        NonFiniteSource::Gradient("encoder.block1.moe.router".into())
    );
    let message = err.to_string();
    assert!(message.contains("step 42") && message.contains("encoder.block1.moe.router"));

    let err = check_and_clip(3, f64::INFINITY, &params, &grads, None, None).unwrap_err();
    let guard = err.downcast_ref::<NonFinite>().unwrap();
    assert_eq!(guard.source, NonFiniteSource::Loss(f64::INFINITY));
    assert!(err.to_string().contains("step 3"));
}
