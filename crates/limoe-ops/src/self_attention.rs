//! Multi-head self-attention as one CPU op: `softmax(q k^T / sqrt(d) + bias) v` for every
//! (sequence, head), read straight out of the QKV projection and written with the heads
//! merged, with a hand-written backward.
//!
//! Built from candle primitives, attention splits and permutes the projection (three copies),
//! scales q, adds the bias, and runs two batched matmuls; candle's backward then pads each of
//! q, k and v back to the projection's shape with zeros and sums them, and starts every
//! gradient as zeros. Here the forward and the backward are one parallel loop over
//! (sequence, head) pairs of small strided matmuls (the `gemm` crate candle itself uses); the
//! forward keeps the attention weights for the backward when `qkv` tracks a gradient
//! (B * heads * N^2 values, cheaper to keep than to recompute).

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::fused::softmax_in_place;
use crate::matmul::{Shared, gemm};
use crate::real::Real;
use crate::reduce::dot;
use crate::saved::Saved;
use crate::storage::same_float;
use crate::wide::{Wide, wide};

/// Self-attention over `qkv` [B * N, 3 * W] (B sequences of N tokens; q, k, v, each W =
/// heads * d features) with an additive key bias [B, N]; the output is [B * N, W].
pub(crate) struct SelfAttention {
    /// Tokens per sequence (N).
    pub tokens: usize,
    /// Number of heads.
    pub heads: usize,
    /// The attention weights [B * heads, N, N], for the backward.
    pub weights: Saved,
}

/// The gradient of [`SelfAttention`] with respect to `qkv`; inputs (qkv, weights, grad).
struct SelfAttentionBackward {
    tokens: usize,
    heads: usize,
}

/// Sizes of one attention problem.
#[derive(Clone, Copy)]
pub(crate) struct Dims {
    /// Sequences.
    pub batch: usize,
    /// Tokens per sequence.
    pub tokens: usize,
    /// Heads.
    pub heads: usize,
    /// Features per head.
    pub head_dim: usize,
}

impl Dims {
    fn of(qkv: &Layout, tokens: usize, heads: usize, op: &str) -> Result<Dims> {
        let &[rows, features] = qkv.dims() else {
            candle_core::bail!("{op}: qkv must be [rows, 3 * width], got {:?}", qkv.dims());
        };
        Dims::new(rows, features, tokens, heads, op)
    }

    /// The sizes of `rows` rows of `features` = 3 * width qkv features.
    pub(crate) fn new(
        rows: usize,
        features: usize,
        tokens: usize,
        heads: usize,
        op: &str,
    ) -> Result<Dims> {
        if tokens == 0 || !rows.is_multiple_of(tokens) {
            candle_core::bail!("{op}: {rows} rows are not sequences of {tokens} tokens");
        }
        if heads == 0 || !features.is_multiple_of(3 * heads) {
            candle_core::bail!("{op}: {features} qkv features do not split into 3 x {heads} heads");
        }
        Ok(Dims {
            batch: rows / tokens,
            tokens,
            heads,
            head_dim: features / (3 * heads),
        })
    }

    pub(crate) fn width(&self) -> usize {
        self.heads * self.head_dim
    }
}

/// `dst = beta * lhs @ rhs` for row-major strided operands `(pointer, row stride, column
/// stride)`, on the calling thread (the tasks are the parallelism).
///
/// # Safety
/// As for [`gemm`].
unsafe fn matmul<T: Real>(
    sizes: (usize, usize, usize),
    dst: (*mut T, usize, usize),
    lhs: (*const T, usize, usize),
    rhs: (*const T, usize, usize),
    beta: T,
) {
    // SAFETY: upheld by the caller.
    unsafe { gemm(sizes, dst, false, lhs, rhs, beta, false) }
}

/// Attention weights of sequence `b`, head `h` into `p` [N, N]: softmax over keys of
/// `q k^T * scale + bias`.
fn weights<T: Real>(qkv: &[T], bias: &[T], dims: Dims, b: usize, h: usize, p: &mut [T]) {
    let (n, d, w) = (dims.tokens, dims.head_dim, dims.width());
    let base = b * n * 3 * w + h * d;
    let scale = T::from(d as f64).map_or(T::one(), |d| d.sqrt().recip());
    // SAFETY: q and k of (b, h) are N x d blocks with row stride 3W inside qkv; p is N x N.
    unsafe {
        matmul(
            (n, n, d),
            (p.as_mut_ptr(), n, 1),
            (qkv.as_ptr().add(base), 3 * w, 1),
            (qkv.as_ptr().add(base + w), 1, 3 * w),
            scale,
        );
    }
    wide(MaskedSoftmax {
        scores: p,
        bias: &bias[b * n..(b + 1) * n],
    });
}

/// Each row of `scores` plus `bias`, then its softmax.
struct MaskedSoftmax<'a, T> {
    scores: &'a mut [T],
    bias: &'a [T],
}

impl<T: Real> Wide for MaskedSoftmax<'_, T> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        for row in self.scores.chunks_mut(self.bias.len().max(1)) {
            for (s, &m) in row.iter_mut().zip(self.bias) {
                *s += m;
            }
            softmax_in_place(row);
        }
    }
}

/// The softmax backward of each row: `dp` becomes `p (dp - rowsum(dp p))`.
struct SoftmaxGrad<'a, T> {
    dp: &'a mut [T],
    p: &'a [T],
    n: usize,
}

impl<T: Real> Wide for SoftmaxGrad<'_, T> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        for (dp, p) in self.dp.chunks_mut(self.n).zip(self.p.chunks(self.n)) {
            let dot = dot(dp, p);
            for (g, &p) in dp.iter_mut().zip(p) {
                *g = p * (*g - dot);
            }
        }
    }
}

/// The attention output [B * N, W], and the weights [B * heads, N, N] when `keep_weights`
/// (else empty).
pub(crate) fn forward<T: Real>(
    qkv: &[T],
    bias: &[T],
    dims: Dims,
    keep_weights: bool,
) -> (Vec<T>, Vec<T>) {
    let (n, d, w) = (dims.tokens, dims.head_dim, dims.width());
    let tasks = dims.batch * dims.heads;
    let mut out = vec![T::zero(); dims.batch * n * w];
    let mut kept = if keep_weights {
        vec![T::zero(); tasks * n * n]
    } else {
        Vec::new()
    };
    let dst = Shared(out.as_mut_ptr());
    let all_weights = Shared(kept.as_mut_ptr());
    (0..tasks).into_par_iter().for_each_init(
        || vec![T::zero(); if keep_weights { 0 } else { n * n }],
        |scratch, task| {
            let (b, h) = (task / dims.heads, task % dims.heads);
            let p: &mut [T] = if keep_weights {
                // SAFETY: block `task` of the kept weights (N x N) is this task's alone.
                unsafe { std::slice::from_raw_parts_mut(all_weights.at(task * n * n), n * n) }
            } else {
                scratch
            };
            weights(qkv, bias, dims, b, h, p);
            // SAFETY: v of (b, h) is an N x d block with row stride 3W in qkv; the output
            // block of (b, h) (row stride W) is written by this task only.
            unsafe {
                matmul(
                    (n, d, n),
                    (dst.at(b * n * w + h * d), w, 1),
                    (p.as_ptr(), n, 1),
                    (qkv.as_ptr().add(b * n * 3 * w + 2 * w + h * d), 3 * w, 1),
                    T::one(),
                );
            }
        },
    );
    (out, kept)
}

/// The gradient with respect to `qkv`, from the weights the forward kept.
pub(crate) fn backward<T: Real>(qkv: &[T], weights: &[T], grad: &[T], dims: Dims) -> Vec<T> {
    let (n, d, w) = (dims.tokens, dims.head_dim, dims.width());
    let scale = T::from(d as f64).map_or(T::one(), |d| d.sqrt().recip());
    let mut out = vec![T::zero(); qkv.len()];
    let dst = Shared(out.as_mut_ptr());
    (0..dims.batch * dims.heads).into_par_iter().for_each_init(
        || vec![T::zero(); n * n],
        |dp, task| {
            let (b, h) = (task / dims.heads, task % dims.heads);
            let p = &weights[task * n * n..(task + 1) * n * n];
            let base = b * n * 3 * w + h * d;
            let (q, k, v) = (base, base + w, base + 2 * w);
            let g = grad[b * n * w + h * d..].as_ptr();
            // SAFETY: as in `forward`; the q, k and v blocks of the output for (b, h) are
            // written by this task only, dp is N x N scratch.
            unsafe {
                // dP = dO V^T, dV = P^T dO.
                matmul(
                    (n, n, d),
                    (dp.as_mut_ptr(), n, 1),
                    (g, w, 1),
                    (qkv.as_ptr().add(v), 1, 3 * w),
                    T::one(),
                );
                matmul(
                    (n, d, n),
                    (dst.at(v), 3 * w, 1),
                    (p.as_ptr(), 1, n),
                    (g, w, 1),
                    T::one(),
                );
            }
            // dS = P (dP - rowsum(dP P)).
            wide(SoftmaxGrad { dp, p, n });
            // SAFETY: as above.
            unsafe {
                // dQ = scale dS K, dK = scale dS^T Q.
                matmul(
                    (n, d, n),
                    (dst.at(q), 3 * w, 1),
                    (dp.as_ptr(), n, 1),
                    (qkv.as_ptr().add(k), 3 * w, 1),
                    scale,
                );
                matmul(
                    (n, d, n),
                    (dst.at(k), 3 * w, 1),
                    (dp.as_ptr(), 1, n),
                    (qkv.as_ptr().add(q), 3 * w, 1),
                    scale,
                );
            }
        },
    );
    out
}

impl CustomOp2 for SelfAttention {
    fn name(&self) -> &'static str {
        "fused-self-attention"
    }

    fn cpu_fwd(
        &self,
        qkv: &CpuStorage,
        qkv_layout: &Layout,
        bias: &CpuStorage,
        bias_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let name = self.name();
        let dims = Dims::of(qkv_layout, self.tokens, self.heads, name)?;
        if bias_layout.dims() != [dims.batch, dims.tokens] {
            candle_core::bail!(
                "{name}: the key bias must be [{}, {}], got {:?}",
                dims.batch,
                dims.tokens,
                bias_layout.dims()
            );
        }
        let weights_shape = [dims.batch * dims.heads, dims.tokens, dims.tokens];
        let keep = self.weights.wanted();
        let out = same_float!(name, [(x, qkv, qkv_layout), (m, bias, bias_layout)] => {
            let (out, kept) = forward(x, m, dims, keep);
            self.weights.keep(kept, &weights_shape)?;
            out
        });
        Ok((out, Shape::from((dims.batch * dims.tokens, dims.width()))))
    }

    fn bwd(
        &self,
        qkv: &Tensor,
        _bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let backward = SelfAttentionBackward {
            tokens: self.tokens,
            heads: self.heads,
        };
        let dqkv = qkv.contiguous()?.apply_op3_no_bwd(
            &self.weights.get(self.name())?,
            &grad.contiguous()?,
            &backward,
        )?;
        Ok((Some(dqkv), None))
    }
}

impl CustomOp3 for SelfAttentionBackward {
    fn name(&self) -> &'static str {
        "fused-self-attention-backward"
    }

    fn cpu_fwd(
        &self,
        qkv: &CpuStorage,
        qkv_layout: &Layout,
        weights: &CpuStorage,
        weights_layout: &Layout,
        grad: &CpuStorage,
        grad_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let name = self.name();
        let dims = Dims::of(qkv_layout, self.tokens, self.heads, name)?;
        let (n, tasks) = (dims.tokens, dims.batch * dims.heads);
        if weights_layout.dims() != [tasks, n, n] {
            candle_core::bail!("{name}: the weights have shape {:?}", weights_layout.dims());
        }
        if grad_layout.dims() != [dims.batch * n, dims.width()] {
            candle_core::bail!("{name}: the gradient has shape {:?}", grad_layout.dims());
        }
        let out = same_float!(
            name,
            [(x, qkv, qkv_layout), (p, weights, weights_layout), (g, grad, grad_layout)]
            => backward(x, p, g, dims)
        );
        Ok((out, qkv_layout.shape().clone()))
    }
}
