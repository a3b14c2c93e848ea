//! The fused CPU ops agree with candle's composite formulations, forward and backward, and
//! their gradients match finite differences in f64.

use candle_core::backprop::GradStore;
use candle_core::{D, DType, Device, Tensor, Var};
use limoe_model::random::Stream;
use limoe_ops::{
    HalfBlock, LAYER_NORM_EPS, add_bias, attention_half, expert_mlp, gather_weighted_sum, gelu,
    grouped_linear, grouped_linear_gelu, layer_norm, linear, linear_gelu, mlp_half, normalize,
    scatter_add_rows, self_attention, softmax,
};

fn random(shape: (usize, usize), seed: u64) -> Tensor {
    let mut stream = Stream::new(seed);
    let values: Vec<f64> = (0..shape.0 * shape.1)
        .map(|_| 2.0 * stream.normal())
        .collect();
    Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
}

fn composite_normalize(x: &Tensor) -> Tensor {
    let centred = x
        .broadcast_sub(&x.mean_keepdim(D::Minus1).unwrap())
        .unwrap();
    let variance = centred.sqr().unwrap().mean_keepdim(D::Minus1).unwrap();
    centred
        .broadcast_div(&(variance + LAYER_NORM_EPS).unwrap().sqrt().unwrap())
        .unwrap()
}

type Op = fn(&Tensor) -> Tensor;

fn ops() -> [(&'static str, Op, Op); 3] {
    [
        ("gelu", |x| gelu(x).unwrap(), |x| x.gelu().unwrap()),
        ("normalize", |x| normalize(x).unwrap(), composite_normalize),
        (
            "softmax",
            |x| softmax(x).unwrap(),
            |x| candle_nn::ops::softmax(x, D::Minus1).unwrap(),
        ),
    ]
}

fn values(t: &Tensor) -> Vec<f64> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

/// A fixed random weighting of the outputs, so every output element matters.
fn weighted_sum(y: &Tensor, seed: u64) -> Tensor {
    (y * random(y.dims2().unwrap(), seed))
        .unwrap()
        .sum_all()
        .unwrap()
}

#[test]
fn fused_ops_match_composite_ops_forward_and_backward() {
    for (shape, seed) in [((3, 7), 1), ((300, 130), 2)] {
        for (name, fused, composite) in ops() {
            let x = Var::from_tensor(&random(shape, seed)).unwrap();
            let (a, b) = (fused(x.as_tensor()), composite(x.as_tensor()));
            let worst = values(&a)
                .iter()
                .zip(values(&b))
                .map(|(p, q)| (p - q).abs())
                .fold(0.0, f64::max);
            assert!(worst < 1e-9, "{name} forward {shape:?}: differs by {worst}");
            let ga = weighted_sum(&a, 9).backward().unwrap();
            let gb = weighted_sum(&b, 9).backward().unwrap();
            let (ga, gb) = (
                values(ga.get(x.as_tensor()).unwrap()),
                values(gb.get(x.as_tensor()).unwrap()),
            );
            let worst = ga
                .iter()
                .zip(&gb)
                .map(|(p, q)| (p - q).abs())
                .fold(0.0, f64::max);
            // candle's own GELU backward rounds its constants (~1e-6 off the exact
            // derivative); the finite-difference test below holds the fused ops to 1e-6.
            assert!(
                worst < 1e-5,
                "{name} backward {shape:?}: differs by {worst}"
            );
        }
    }
}

#[test]
fn fused_gradients_match_finite_differences() {
    let eps = 1e-6;
    for (name, fused, _) in ops() {
        let x = Var::from_tensor(&random((2, 5), 3)).unwrap();
        let grads = weighted_sum(&fused(x.as_tensor()), 4).backward().unwrap();
        let analytic = values(grads.get(x.as_tensor()).unwrap());
        let base = values(x.as_tensor());
        for i in 0..base.len() {
            let at = |delta: f64| {
                let mut v = base.clone();
                v[i] += delta;
                let t = Tensor::from_vec(v, (2, 5), &Device::Cpu).unwrap();
                weighted_sum(&fused(&t), 4).to_scalar::<f64>().unwrap()
            };
            let numeric = (at(eps) - at(-eps)) / (2.0 * eps);
            assert!(
                (numeric - analytic[i]).abs() < 1e-6,
                "{name} element {i}: numeric {numeric}, analytic {}",
                analytic[i]
            );
        }
    }
}

#[test]
fn fused_ops_work_in_f32_on_strided_inputs() {
    let x = random((6, 4), 5)
        .to_dtype(candle_core::DType::F32)
        .unwrap()
        .t()
        .unwrap();
    let fused = values(
        &softmax(&x)
            .unwrap()
            .to_dtype(candle_core::DType::F64)
            .unwrap(),
    );
    let composite = values(
        &candle_nn::ops::softmax(&x, D::Minus1)
            .unwrap()
            .to_dtype(candle_core::DType::F64)
            .unwrap(),
    );
    for (a, b) in fused.iter().zip(&composite) {
        assert!((a - b).abs() < 1e-6);
    }
}

/// Largest absolute difference of two tensors' values.
fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    values(a)
        .iter()
        .zip(values(b))
        .map(|(p, q)| (p - q).abs())
        .fold(0.0, f64::max)
}

/// The gradients of `sum(y * weights)`.
fn weighted_gradients(y: &Tensor, weights: &Tensor) -> GradStore {
    (y * weights)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap()
}

/// 1 on the rows that hold data (the first `filled[b]` rows of block `b` of `slots` rows),
/// 0 on the others: [blocks * slots, n].
fn filled_mask(filled: &[usize], slots: usize, n: usize) -> Tensor {
    let mask: Vec<f64> = (0..filled.len() * slots)
        .flat_map(|r| vec![f64::from(u8::from(r % slots < filled[r / slots])); n])
        .collect();
    Tensor::from_vec(mask, (filled.len() * slots, n), &Device::Cpu).unwrap()
}

/// `fused` and `composite` agree on the value and on the gradient of every input, on small
/// and on large (parallel) shapes, in f64.
fn agree_with_gradients(
    name: &str,
    inputs: &[Var],
    fused: impl Fn(&[Tensor]) -> Tensor,
    composite: impl Fn(&[Tensor]) -> Tensor,
) {
    let tensors: Vec<Tensor> = inputs.iter().map(|v| v.as_tensor().clone()).collect();
    let (a, b) = (fused(&tensors), composite(&tensors));
    assert!(max_diff(&a, &b) < 1e-9, "{name} forward");
    let weights = random(
        (
            a.elem_count() / a.dims().last().unwrap(),
            *a.dims().last().unwrap(),
        ),
        7,
    )
    .reshape(a.shape())
    .unwrap();
    let (ga, gb) = (
        weighted_gradients(&a, &weights),
        weighted_gradients(&b, &weights),
    );
    for (i, v) in inputs.iter().enumerate() {
        let (x, y) = (
            ga.get(v.as_tensor()).unwrap(),
            gb.get(v.as_tensor()).unwrap(),
        );
        assert!(max_diff(x, y) < 1e-9, "{name} gradient of input {i}");
    }
}

#[test]
fn fused_layer_norm_and_bias_match_composite_ops() {
    for (rows, n) in [(3, 7), (300, 130)] {
        let var = |shape, seed| Var::from_tensor(&random(shape, seed)).unwrap();
        let (x, scale, shift) = (var((rows, n), 1), var((1, n), 2), var((1, n), 3));
        let vector = |t: &Tensor| t.squeeze(0).unwrap();
        agree_with_gradients(
            "layer_norm",
            &[x.clone(), scale.clone(), shift.clone()],
            |t| layer_norm(&t[0], &vector(&t[1]), &vector(&t[2])).unwrap(),
            |t| {
                composite_normalize(&t[0])
                    .broadcast_mul(&t[1])
                    .unwrap()
                    .broadcast_add(&t[2])
                    .unwrap()
            },
        );
        agree_with_gradients(
            "add_bias",
            &[x.clone(), scale.clone()],
            |t| add_bias(&t[0], &vector(&t[1])).unwrap(),
            |t| t[0].broadcast_add(&t[1]).unwrap(),
        );
        // One bias per block of rows: x [3, rows, n], bias [3, n].
        let blocks =
            Var::from_tensor(&random((3 * rows, n), 4).reshape((3, rows, n)).unwrap()).unwrap();
        let biases = var((3, n), 5);
        agree_with_gradients(
            "add_bias grouped",
            &[blocks, biases],
            |t| add_bias(&t[0], &t[1]).unwrap(),
            |t| t[0].broadcast_add(&t[1].unsqueeze(1).unwrap()).unwrap(),
        );
    }
}

/// A sparse layer's combine and the scatter back into a residual, against candle's index ops:
/// small and large (parallel) shapes, top-1 and top-2, rows read twice (dropped choices all
/// point at one row) and a residual row that receives two rows.
#[test]
fn fused_gather_and_scatter_match_index_ops() {
    let var = |shape, seed| Var::from_tensor(&random(shape, seed)).unwrap();
    for (tokens, n) in [(5, 3), (600, 70)] {
        for k in [1, 2] {
            let buffer = k * tokens + 1;
            let index: Vec<u32> = (0..k * tokens)
                .map(|i| match i % 7 {
                    3 => buffer - 1,
                    _ => (i * 7 + 1) % (buffer - 1),
                } as u32)
                .collect();
            let index = Tensor::from_vec(index, (k, tokens), &Device::Cpu).unwrap();
            let flat = index.flatten_all().unwrap();
            agree_with_gradients(
                "gather_weighted_sum",
                &[var((buffer, n), 1), var((k, tokens), 2)],
                |t| gather_weighted_sum(&t[0], &index, &t[1]).unwrap(),
                |t| {
                    let weights = t[1].reshape((k * tokens, 1)).unwrap();
                    let picked = t[0].index_select(&flat, 0).unwrap();
                    let weighted = picked.broadcast_mul(&weights).unwrap();
                    weighted.reshape((k, tokens, n)).unwrap().sum(0).unwrap()
                },
            );
        }
        let stream = 2 * tokens + 1;
        let mut targets: Vec<u32> = (0..tokens as u32).map(|i| 2 * i + 1).collect();
        targets[tokens - 1] = targets[0];
        let targets = Tensor::new(targets, &Device::Cpu).unwrap();
        agree_with_gradients(
            "scatter_add_rows",
            &[var((stream, n), 3), var((tokens, n), 4)],
            |t| scatter_add_rows(&t[0], &targets, &t[1]).unwrap(),
            |t| {
                let update = t[0].zeros_like().unwrap().index_add(&targets, &t[1], 0);
                (&t[0] + update.unwrap()).unwrap()
            },
        );
    }
}

#[test]
fn fused_layer_norm_gradients_match_finite_differences() {
    let eps = 1e-6;
    let inputs = [random((2, 5), 3), random((1, 5), 6), random((1, 5), 8)];
    let loss = |t: &[Tensor]| {
        let y = layer_norm(&t[0], &t[1].squeeze(0).unwrap(), &t[2].squeeze(0).unwrap()).unwrap();
        weighted_sum(&y, 4)
    };
    let vars: Vec<Var> = inputs
        .iter()
        .map(|t| Var::from_tensor(t).unwrap())
        .collect();
    let tensors: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let grads = loss(&tensors).backward().unwrap();
    for (k, var) in vars.iter().enumerate() {
        let analytic = values(grads.get(var.as_tensor()).unwrap());
        let base = values(&inputs[k]);
        for i in 0..base.len() {
            let at = |delta: f64| {
                let mut v = base.clone();
                v[i] += delta;
                let mut moved = inputs.to_vec();
                moved[k] = Tensor::from_vec(v, inputs[k].shape(), &Device::Cpu).unwrap();
                loss(&moved).to_scalar::<f64>().unwrap()
            };
            let numeric = (at(eps) - at(-eps)) / (2.0 * eps);
            assert!(
                (numeric - analytic[i]).abs() < 1e-6,
                "input {k} element {i}: numeric {numeric}, analytic {}",
                analytic[i]
            );
        }
    }
}

/// Attention from candle primitives: split the projection, scale q, add the bias, softmax.
fn composite_attention(qkv: &Tensor, bias: &Tensor, n: usize, heads: usize) -> Tensor {
    let (rows, features) = qkv.dims2().unwrap();
    let b = rows / n;
    let d = features / (3 * heads);
    let qkv = qkv
        .reshape((b, n, 3, heads, d))
        .unwrap()
        .permute((2, 0, 3, 1, 4))
        .unwrap();
    let part = |i: usize| qkv.get(i).unwrap().contiguous().unwrap();
    let q = (part(0) * (d as f64).powf(-0.5)).unwrap();
    let scores = q
        .matmul(&part(1).t().unwrap())
        .unwrap()
        .broadcast_add(&bias.reshape((b, 1, 1, n)).unwrap())
        .unwrap();
    candle_nn::ops::softmax(&scores, D::Minus1)
        .unwrap()
        .matmul(&part(2))
        .unwrap()
        .transpose(1, 2)
        .unwrap()
        .reshape((rows, heads * d))
        .unwrap()
}

#[test]
fn fused_self_attention_matches_composite_attention() {
    for (batch, tokens, heads, d) in [(2, 5, 2, 3), (3, 37, 4, 16)] {
        let qkv = Var::from_tensor(&random((batch * tokens, 3 * heads * d), 11)).unwrap();
        // Sequence i has its last i keys masked out.
        let bias: Vec<f64> = (0..batch * tokens)
            .map(|i| {
                if i % tokens + i / tokens >= tokens {
                    -1e9
                } else {
                    0.0
                }
            })
            .collect();
        let bias = Tensor::from_vec(bias, (batch, tokens), &Device::Cpu).unwrap();
        agree_with_gradients(
            "self_attention",
            &[qkv],
            |t| self_attention(&t[0], &bias, tokens, heads).unwrap(),
            |t| composite_attention(&t[0], &bias, tokens, heads),
        );
    }
}

/// x [rows, in], weight [out, in] and bias [1, out] of a linear layer as Vars.
fn linear_vars(rows: usize, inputs: usize, outputs: usize) -> [Var; 3] {
    let var = |shape, seed| Var::from_tensor(&random(shape, seed)).unwrap();
    [
        var((rows, inputs), 1),
        var((outputs, inputs), 2),
        var((1, outputs), 3),
    ]
}

/// x [groups * rows, in], weight [groups, in, out] and bias [groups, out] of grouped linear
/// layers as Vars.
fn grouped_vars(groups: usize, rows: usize, inputs: usize, outputs: usize) -> [Var; 3] {
    let var = |shape, seed| Var::from_tensor(&random(shape, seed)).unwrap();
    let weight = random((groups * inputs, outputs), 2)
        .reshape((groups, inputs, outputs))
        .unwrap();
    [
        var((groups * rows, inputs), 1),
        Var::from_tensor(&weight).unwrap(),
        var((groups, outputs), 3),
    ]
}

#[test]
fn fused_linear_matches_matmul_and_bias() {
    for (rows, inputs, outputs) in [(3, 5, 4), (200, 96, 130)] {
        let [x, w, b] = linear_vars(rows, inputs, outputs);
        agree_with_gradients(
            "linear",
            &[x, w, b],
            |t| linear(&t[0], &t[1], &t[2].squeeze(0).unwrap()).unwrap(),
            |t| {
                t[0].matmul(&t[1].t().unwrap())
                    .unwrap()
                    .broadcast_add(&t[2])
                    .unwrap()
            },
        );
    }
}

#[test]
fn fused_grouped_linear_matches_batched_matmul_and_bias() {
    for (groups, rows, inputs, outputs) in [(2, 3, 5, 4), (4, 50, 96, 130)] {
        let [x, w, b] = grouped_vars(groups, rows, inputs, outputs);
        agree_with_gradients(
            "grouped_linear",
            &[x, w, b],
            |t| grouped_linear(&t[0], &t[1], &t[2], None).unwrap(),
            |t| {
                t[0].reshape((groups, rows, inputs))
                    .unwrap()
                    .matmul(&t[1])
                    .unwrap()
                    .broadcast_add(&t[2].unsqueeze(1).unwrap())
                    .unwrap()
                    .reshape((groups * rows, outputs))
                    .unwrap()
            },
        );
    }
}

#[test]
fn fused_linear_gelu_matches_linear_then_gelu() {
    for (rows, inputs, outputs) in [(3, 5, 4), (200, 96, 130)] {
        let [x, w, b] = linear_vars(rows, inputs, outputs);
        agree_with_gradients(
            "linear_gelu",
            &[x, w, b],
            |t| linear_gelu(&t[0], &t[1], &t[2].squeeze(0).unwrap()).unwrap(),
            |t| gelu(&linear(&t[0], &t[1], &t[2].squeeze(0).unwrap()).unwrap()).unwrap(),
        );
    }
}

#[test]
fn fused_grouped_linear_gelu_matches_grouped_linear_then_gelu() {
    for (groups, rows, inputs, outputs) in [(2, 3, 5, 4), (4, 50, 96, 130)] {
        let [x, w, b] = grouped_vars(groups, rows, inputs, outputs);
        agree_with_gradients(
            "grouped_linear_gelu",
            &[x, w, b],
            |t| grouped_linear_gelu(&t[0], &t[1], &t[2], None).unwrap(),
            |t| gelu(&grouped_linear(&t[0], &t[1], &t[2], None).unwrap()).unwrap(),
        );
    }
}

#[test]
fn ops_that_keep_values_work_without_gradients() {
    // Plain tensors track no gradient: the ops keep nothing and still compute the same values.
    let (x, w, b) = (
        random((40, 24), 1),
        random((36, 24), 2),
        random((1, 36), 3).squeeze(0).unwrap(),
    );
    let fused = linear_gelu(&x, &w, &b).unwrap();
    let separate = gelu(&linear(&x, &w, &b).unwrap()).unwrap();
    assert!(max_diff(&fused, &separate) < 1e-12);
    let (batch, tokens, heads) = (2, 5, 2);
    let qkv = random((batch * tokens, 3 * heads * 4), 4);
    let bias = Tensor::zeros((batch, tokens), DType::F64, &Device::Cpu).unwrap();
    let kept = self_attention(&Var::from_tensor(&qkv).unwrap(), &bias, tokens, heads).unwrap();
    let plain = self_attention(&qkv, &bias, tokens, heads).unwrap();
    assert!(max_diff(&kept, &plain) < 1e-12);
}

/// x, layer-norm scale and shift, and two linear layers `width -> hidden` and `inner -> width`
/// as Vars.
fn half_block_vars(rows: usize, width: usize, hidden: usize, inner: usize) -> Vec<Var> {
    let var = |shape, seed| Var::from_tensor(&random(shape, seed)).unwrap();
    vec![
        var((rows, width), 1),
        var((1, width), 2),
        var((1, width), 3),
        var((hidden, width), 4),
        var((1, hidden), 5),
        var((width, inner), 6),
        var((1, width), 7),
    ]
}

fn half_block(t: &[Tensor]) -> (Tensor, Vec<Tensor>) {
    let vectors: Vec<Tensor> = [1, 2, 4, 6]
        .iter()
        .map(|&i| t[i].squeeze(0).unwrap())
        .collect();
    (t[0].clone(), vectors)
}

#[test]
fn fused_attention_half_matches_its_parts() {
    for (batch, tokens, heads, width) in [(2, 3, 2, 4), (4, 20, 2, 48)] {
        let mut bias = vec![0.0; batch * tokens];
        bias[tokens - 1] = -1e9;
        let bias = Tensor::from_vec(bias, (batch, tokens), &Device::Cpu).unwrap();
        agree_with_gradients(
            "attention_half",
            &half_block_vars(batch * tokens, width, 3 * width, width),
            |t| {
                let (x, v) = half_block(t);
                let params = HalfBlock {
                    norm: (&v[0], &v[1]),
                    first: (&t[3], &v[2]),
                    second: (&t[5], &v[3]),
                };
                attention_half(&x, &params, &bias, tokens, heads).unwrap()
            },
            |t| {
                let (x, v) = half_block(t);
                let normed = layer_norm(&x, &v[0], &v[1]).unwrap();
                let qkv = linear(&normed, &t[3], &v[2]).unwrap();
                let attended = self_attention(&qkv, &bias, tokens, heads).unwrap();
                (x + linear(&attended, &t[5], &v[3]).unwrap()).unwrap()
            },
        );
    }
}

#[test]
fn fused_mlp_half_matches_its_parts() {
    for (rows, width, hidden) in [(3, 4, 6), (300, 48, 130)] {
        agree_with_gradients(
            "mlp_half",
            &half_block_vars(rows, width, hidden, hidden),
            |t| {
                let (x, v) = half_block(t);
                let params = HalfBlock {
                    norm: (&v[0], &v[1]),
                    first: (&t[3], &v[2]),
                    second: (&t[5], &v[3]),
                };
                mlp_half(&x, &params).unwrap()
            },
            |t| {
                let (x, v) = half_block(t);
                let normed = layer_norm(&x, &v[0], &v[1]).unwrap();
                let hidden = linear_gelu(&normed, &t[3], &v[2]).unwrap();
                (x + linear(&hidden, &t[5], &v[3]).unwrap()).unwrap()
            },
        );
    }
}

#[test]
fn grouped_linear_skips_empty_rows_exactly() {
    // Buffers of 7 slots filled 5, 0 and 7 rows deep; nothing reads the empty rows,
    // so the weighting below is zero there.
    let (groups, rows, inputs, outputs) = (3, 7, 6, 5);
    let filled = [5, 0, 7];
    let mask = filled_mask(&filled, rows, outputs);
    let weights = (random((groups * rows, outputs), 7) * &mask).unwrap();
    let [x, w, b] = grouped_vars(groups, rows, inputs, outputs);
    for gelu in [false, true] {
        let run = |filled: Option<&[usize]>| {
            let op = if gelu {
                grouped_linear_gelu
            } else {
                grouped_linear
            };
            let y = op(x.as_tensor(), w.as_tensor(), b.as_tensor(), filled).unwrap();
            let grads = weighted_gradients(&y, &weights);
            let grad = |v: &Var| grads.get(v.as_tensor()).unwrap().clone();
            (y, [grad(&x), grad(&w), grad(&b)])
        };
        let (all, all_grads) = run(None);
        let (skipped, skipped_grads) = run(Some(&filled));
        let on_data = |y: &Tensor| (y * &mask).unwrap();
        assert!(
            max_diff(&on_data(&all), &on_data(&skipped)) < 1e-12,
            "gelu {gelu}: outputs"
        );
        // The empty rows were not computed.
        assert!(
            max_diff(&all, &skipped) > 1e-3,
            "gelu {gelu}: empty rows computed"
        );
        for (i, (a, s)) in all_grads.iter().zip(&skipped_grads).enumerate() {
            assert!(max_diff(a, s) < 1e-12, "gelu {gelu}: gradient of input {i}");
        }
    }
}

/// Tokens [T, W], and the experts' w1 [E, W, H], b1 [E, H], w2 [E, H, W], b2 [E, W] as Vars.
fn expert_vars(experts: usize, tokens: usize, width: usize, hidden: usize) -> Vec<Var> {
    let var = |t: Tensor| Var::from_tensor(&t).unwrap();
    let weight =
        |rows, cols, seed| random((experts * rows, cols), seed).reshape((experts, rows, cols));
    vec![
        var(random((tokens, width), 1)),
        var(weight(width, hidden, 2).unwrap()),
        var(random((experts, hidden), 3)),
        var(weight(hidden, width, 4).unwrap()),
        var(random((experts, width), 5)),
    ]
}

/// `S` slots per expert reading tokens out of order, some twice.
fn slot_index(experts: usize, slots: usize, tokens: usize) -> Tensor {
    let rows: Vec<u32> = (0..experts * slots)
        .map(|r| ((r * 5 + 3) % tokens) as u32)
        .collect();
    Tensor::new(rows, &Device::Cpu).unwrap()
}

#[test]
fn expert_mlp_matches_a_gather_and_two_batched_layers() {
    for (experts, slots, tokens, width, hidden) in [(3, 4, 7, 5, 6), (4, 48, 150, 24, 80)] {
        let index = slot_index(experts, slots, tokens);
        agree_with_gradients(
            "expert_mlp",
            &expert_vars(experts, tokens, width, hidden),
            |t| expert_mlp(&t[0], &index, (&t[1], &t[2]), (&t[3], &t[4]), None).unwrap(),
            |t| {
                let layer = |x: &Tensor, w: &Tensor, b: &Tensor| {
                    let rows = x.reshape((experts, slots, ())).unwrap().matmul(w).unwrap();
                    rows.broadcast_add(&b.unsqueeze(1).unwrap()).unwrap()
                };
                let x = t[0].index_select(&index, 0).unwrap();
                // limoe's GELU: candle's `gelu` runs an exact tanh, the fused ops a fast one.
                let hidden = gelu(&layer(&x, &t[1], &t[2])).unwrap();
                layer(&hidden, &t[3], &t[4])
                    .reshape((experts * slots, width))
                    .unwrap()
            },
        );
    }
}

#[test]
fn expert_mlp_skips_empty_slots_exactly() {
    // Blocks of 6 slots filled 4, 0 and 6 deep; nothing reads the empty slots.
    let (experts, slots, tokens, width, hidden) = (3, 6, 9, 5, 7);
    let filled = [4, 0, 6];
    let index = slot_index(experts, slots, tokens);
    let vars = expert_vars(experts, tokens, width, hidden);
    let mask = filled_mask(&filled, slots, width);
    let weights = (random((experts * slots, width), 7) * &mask).unwrap();
    let run = |filled: Option<&[usize]>| {
        let t: Vec<&Tensor> = vars.iter().map(|v| v.as_tensor()).collect();
        let y = expert_mlp(t[0], &index, (t[1], t[2]), (t[3], t[4]), filled).unwrap();
        let grads = weighted_gradients(&y, &weights);
        let grads: Vec<Tensor> = t.iter().map(|v| grads.get(v).unwrap().clone()).collect();
        ((y * &mask).unwrap(), grads)
    };
    let ((all, all_grads), (skipped, skipped_grads)) = (run(None), run(Some(&filled)));
    assert!(max_diff(&all, &skipped) < 1e-12, "outputs");
    for (i, (a, s)) in all_grads.iter().zip(&skipped_grads).enumerate() {
        assert!(max_diff(a, s) < 1e-12, "gradient of input {i}");
    }
}
