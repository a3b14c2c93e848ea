//! The two residual halves of a pre-LN transformer block as single CPU ops:
//!
//! - attention: `x + out(attention(qkv(layer_norm(x))))`,
//! - MLP: `x + fc2(gelu(fc1(layer_norm(x))))`,
//!
//! each with a hand-written backward. Built from the separate fused ops, a half is four or
//! five nodes of candle's backward, and candle starts the gradient of every node's input as a
//! zeroed buffer and adds into it: measured on the t128 step, those zero-and-add passes over
//! the [tokens, width] and [tokens, hidden] intermediates ran on one thread and took ~15% of
//! the step. Here a half is one node; it keeps its intermediates for the backward.
//!
//! The parameters arrive packed into one vector (candle ops have at most three inputs):
//! `[scale, shift, w1, b1, w2, b2]` with `w1` [hidden, width] and `w2` [width, hidden] in
//! `x W^T` layout ([`pack`]); the gradient comes back in the same layout.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};

use super::attention::{self, Dims};
use super::fused::{Gelu, GeluBackward, LayerNormBackwardRows, layer_norm};
use super::kernel::{Kernel2, Real, Rows, collect_rows, column_sums, map_rows, same_float};
use super::linear::{self, gemm, written};
use super::saved::{Saved, with_values};

/// Sizes of a half block: rows of `width` features, the first layer's outputs `hidden` (3 *
/// width for attention's qkv, the MLP's hidden width) and the second layer's inputs `inner`
/// (width for attention, hidden for the MLP); they fix where each parameter lies in the
/// packed vector.
#[derive(Clone, Copy)]
struct Layer {
    rows: usize,
    width: usize,
    hidden: usize,
    inner: usize,
}

impl Layer {
    /// The packed parameters' segment lengths, in order: scale, shift, w1, b1, w2, b2.
    fn segments(&self) -> [usize; 6] {
        let (w, h) = (self.width, self.hidden);
        [w, w, h * w, h, w * self.inner, w]
    }

    fn packed_len(&self) -> usize {
        self.segments().iter().sum()
    }

    /// The packed vector cut into its six parameters.
    fn split<'a, T>(&self, packed: &'a [T]) -> [&'a [T]; 6] {
        let mut rest = packed;
        self.segments().map(|len| {
            let (head, tail) = rest.split_at(len);
            rest = tail;
            head
        })
    }

    /// Checks `x` [rows, width] and the packed length; `rows` and `width` from `x`, the
    /// other sizes from them with `sizes(width) = (hidden, inner)`.
    fn of(
        x: &Layout,
        packed: &Layout,
        sizes: impl Fn(usize) -> (usize, usize),
        op: &str,
    ) -> Result<Layer> {
        let &[rows, width] = x.dims() else {
            candle_core::bail!("{op}: x must be [rows, width], got {:?}", x.dims());
        };
        let (hidden, inner) = sizes(width);
        let layer = Layer {
            rows,
            width,
            hidden,
            inner,
        };
        if packed.shape().elem_count() != layer.packed_len() {
            candle_core::bail!(
                "{op}: {} packed parameters, expected {} for width {width} and hidden {hidden}",
                packed.shape().elem_count(),
                layer.packed_len()
            );
        }
        Ok(layer)
    }
}

/// The parameters of a half block in the packed layout the ops read.
pub(crate) fn pack(
    norm: (&Tensor, &Tensor),
    first: (&Tensor, &Tensor),
    second: (&Tensor, &Tensor),
) -> Result<Tensor> {
    Tensor::cat(
        &[
            norm.0,
            norm.1,
            &first.0.flatten_all()?,
            first.1,
            &second.0.flatten_all()?,
            second.1,
        ],
        0,
    )
}

/// `residual + a W^T + b` for `a` [rows, inputs], `w` [outputs, inputs].
fn project_onto<T: Real>(residual: &[T], a: &[T], w: &[T], b: &[T], outputs: usize) -> Vec<T> {
    struct Onto<'a, T> {
        residual: &'a [T],
        bias: &'a [T],
    }
    impl<T: Real> Rows<T> for Onto<'_, T> {
        #[inline(always)]
        fn row(&self, index: usize, out: &mut [T]) {
            let n = self.bias.len();
            let residual = &self.residual[index * n..(index + 1) * n];
            for ((o, &r), &b) in out.iter_mut().zip(residual).zip(self.bias) {
                *o = r + b;
            }
        }
    }
    let inputs = w.len() / outputs.max(1);
    let rows = a.len() / inputs.max(1);
    let mut out = collect_rows(rows * outputs, outputs, &Onto { residual, bias: b });
    // SAFETY: a is rows x inputs, W^T is W read with swapped strides, out is rows x outputs.
    unsafe {
        gemm(
            (rows, outputs, inputs),
            (out.as_mut_ptr(), outputs, 1),
            true,
            (a.as_ptr(), inputs, 1),
            (w.as_ptr(), 1, inputs),
            T::one(),
            true,
        );
    }
    out
}

/// The backward of `y = a W^T + b` for `a` [rows, inputs], `w` [outputs, inputs] and the
/// gradient `g` [rows, outputs]: writes dW and db into `dw` and `db`, returns da.
fn linear_backward<T: Real>(g: &[T], a: &[T], w: &[T], dw: &mut [T], db: &mut [T]) -> Vec<T> {
    let outputs = db.len();
    let inputs = w.len() / outputs.max(1);
    let rows = g.len() / outputs.max(1);
    // SAFETY: g is rows x outputs, W is outputs x inputs, a is rows x inputs; dw is outputs x
    // inputs; each gemm writes its whole output without reading it.
    let da = unsafe {
        gemm(
            (outputs, inputs, rows),
            (dw.as_mut_ptr(), inputs, 1),
            false,
            (g.as_ptr(), 1, outputs),
            (a.as_ptr(), inputs, 1),
            T::one(),
            true,
        );
        written(rows * inputs, |da: *mut T| {
            gemm(
                (rows, inputs, outputs),
                (da, inputs, 1),
                false,
                (g.as_ptr(), outputs, 1),
                (w.as_ptr(), inputs, 1),
                T::one(),
                true,
            )
        })
    };
    db.copy_from_slice(&column_sums(g, None, 1, outputs));
    da
}

/// The backward of `x + f(layer_norm(x))` at the layer norm: from the gradient `g` at the
/// output and `dh` at the layer norm's output, writes d scale and d shift, returns dx.
fn norm_backward<T: Real>(
    x: &[T],
    g: &[T],
    dh: &[T],
    scale: &[T],
    (dscale, dshift): (&mut [T], &mut [T]),
) -> Vec<T> {
    let n = scale.len();
    dscale.copy_from_slice(&column_sums(dh, Some(x), 1, n));
    dshift.copy_from_slice(&column_sums(dh, None, 1, n));
    let rows = LayerNormBackwardRows {
        x,
        grad: dh,
        scale,
        residual: Some(g),
    };
    collect_rows(x.len(), n, &rows)
}

/// The packed gradient buffer and its six segments.
fn packed_grads<T: Real>(layer: &Layer) -> Vec<T> {
    vec![T::zero(); layer.packed_len()]
}

/// Cuts a packed gradient buffer into its six segments.
fn split_mut<'a, T>(layer: &Layer, packed: &'a mut [T]) -> [&'a mut [T]; 6] {
    let mut rest = packed;
    layer.segments().map(|len| {
        let (head, tail) = std::mem::take(&mut rest).split_at_mut(len);
        rest = tail;
        head
    })
}

/// `x + out(attention(qkv(layer_norm(x))))` for `x` [B * N, W] (B sequences of `tokens`),
/// inputs (x, packed parameters, key bias [B, N]).
pub(crate) struct AttentionHalf {
    /// Tokens per sequence.
    pub tokens: usize,
    /// Attention heads.
    pub heads: usize,
    /// layer_norm(x), the qkv projection, the attention weights and the attention output.
    pub kept: [Saved; 4],
}

/// What the attention half keeps, as plain vectors.
struct AttentionKept<T> {
    normed: Vec<T>,
    qkv: Vec<T>,
    weights: Vec<T>,
    attended: Vec<T>,
}

fn attention_forward<T: Real>(
    x: &[T],
    packed: &[T],
    bias: &[T],
    layer: Layer,
    dims: Dims,
    keep: bool,
) -> (Vec<T>, AttentionKept<T>) {
    let [scale, shift, w_qkv, b_qkv, w_out, b_out] = layer.split(packed);
    let (rows, width) = (layer.rows, layer.width);
    let normed = layer_norm(x, scale, shift, width);
    let qkv = linear::forward(&normed, w_qkv, b_qkv, (rows, width, 3 * width));
    let (attended, weights) = attention::forward(&qkv, bias, dims, keep);
    let out = project_onto(x, &attended, w_out, b_out, width);
    let kept = AttentionKept {
        normed,
        qkv,
        weights,
        attended,
    };
    (out, kept)
}

fn attention_backward<T: Real>(
    x: &[T],
    packed: &[T],
    g: &[T],
    kept: [&[T]; 4],
    layer: Layer,
    dims: Dims,
) -> Vec<T> {
    let [normed, qkv, weights, attended] = kept;
    let [scale, _, w_qkv, _, w_out, _] = layer.split(packed);
    let mut grads = packed_grads(&layer);
    let [d_scale, d_shift, d_wqkv, d_bqkv, d_wout, d_bout] = split_mut(&layer, &mut grads);
    let d_attended = linear_backward(g, attended, w_out, d_wout, d_bout);
    let d_qkv = attention::backward(qkv, weights, &d_attended, dims);
    let d_normed = linear_backward(&d_qkv, normed, w_qkv, d_wqkv, d_bqkv);
    let dx = norm_backward(x, g, &d_normed, scale, (d_scale, d_shift));
    [dx, grads].concat()
}

/// Splits the backward's result (dx then the packed gradient) into two tensors.
fn split_result(
    both: Tensor,
    x: &Tensor,
    packed: &Tensor,
) -> Result<(Option<Tensor>, Option<Tensor>)> {
    let dx = both.narrow(0, 0, x.elem_count())?.reshape(x.shape())?;
    let dp = both.narrow(0, x.elem_count(), packed.elem_count())?;
    Ok((Some(dx), Some(dp)))
}

impl CustomOp3 for AttentionHalf {
    fn name(&self) -> &'static str {
        "fused-attention-half"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        packed: &CpuStorage,
        packed_layout: &Layout,
        bias: &CpuStorage,
        bias_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let name = self.name();
        let width = x_layout.dims().last().copied().unwrap_or(0);
        let layer = Layer::of(x_layout, packed_layout, |w| (3 * w, w), name)?;
        let dims = Dims::new(layer.rows, 3 * width, self.tokens, self.heads, name)?;
        if bias_layout.dims() != [dims.batch, dims.tokens] {
            candle_core::bail!("{name}: the key bias has shape {:?}", bias_layout.dims());
        }
        let keep = self.kept[0].wanted();
        let shapes = [
            vec![layer.rows, width],
            vec![layer.rows, 3 * width],
            vec![dims.batch * dims.heads, dims.tokens, dims.tokens],
            vec![layer.rows, width],
        ];
        let out = same_float!(
            name,
            [(x, x, x_layout), (p, packed, packed_layout), (m, bias, bias_layout)]
            => {
                let (out, kept) = attention_forward(x, p, m, layer, dims, keep);
                let values = [kept.normed, kept.qkv, kept.weights, kept.attended];
                for ((saved, values), shape) in self.kept.iter().zip(values).zip(&shapes) {
                    saved.keep(values, shape)?;
                }
                out
            }
        );
        Ok((out, x_layout.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        packed: &Tensor,
        _bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let kept = self
            .kept
            .iter()
            .map(|saved| saved.get(self.name()))
            .collect::<Result<Vec<_>>>()?;
        let backward = AttentionHalfBackward {
            tokens: self.tokens,
            heads: self.heads,
            kept,
        };
        let both = x.contiguous()?.apply_op3_no_bwd(
            &packed.contiguous()?,
            &grad.contiguous()?,
            &backward,
        )?;
        let (dx, dp) = split_result(both, x, packed)?;
        Ok((dx, dp, None))
    }
}

/// The backward of [`AttentionHalf`]: inputs (x, packed, grad) and the kept tensors; the
/// result is dx followed by the packed parameters' gradient, flat.
struct AttentionHalfBackward {
    tokens: usize,
    heads: usize,
    kept: Vec<Tensor>,
}

impl CustomOp3 for AttentionHalfBackward {
    fn name(&self) -> &'static str {
        "fused-attention-half-backward"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        packed: &CpuStorage,
        packed_layout: &Layout,
        grad: &CpuStorage,
        grad_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let name = self.name();
        let width = x_layout.dims().last().copied().unwrap_or(0);
        let layer = Layer::of(x_layout, packed_layout, |w| (3 * w, w), name)?;
        let dims = Dims::new(layer.rows, 3 * width, self.tokens, self.heads, name)?;
        if grad_layout.shape() != x_layout.shape() {
            candle_core::bail!("{name}: the gradient has shape {:?}", grad_layout.dims());
        }
        let out = same_float!(
            name,
            [(x, x, x_layout), (p, packed, packed_layout), (g, grad, grad_layout)]
            => with_values(&self.kept, name, |kept| {
                let [normed, qkv, weights, attended] = kept else {
                    candle_core::bail!("{name}: expected 4 kept tensors");
                };
                Ok(attention_backward(x, p, g, [normed, qkv, weights, attended], layer, dims))
            })?
        );
        let len = x_layout.shape().elem_count() + layer.packed_len();
        Ok((out, Shape::from(len)))
    }
}

/// `x + fc2(gelu(fc1(layer_norm(x))))` for `x` [rows, width]; inputs (x, packed parameters).
pub(crate) struct MlpHalf {
    /// The hidden width.
    pub hidden: usize,
    /// layer_norm(x), fc1's output (before GELU) and GELU's output.
    pub kept: [Saved; 3],
}

fn mlp_forward<T: Real>(x: &[T], packed: &[T], layer: Layer) -> (Vec<T>, [Vec<T>; 3]) {
    let [scale, shift, w1, b1, w2, b2] = layer.split(packed);
    let (rows, width, hidden) = (layer.rows, layer.width, layer.hidden);
    let normed = layer_norm(x, scale, shift, width);
    let pre = linear::forward(&normed, w1, b1, (rows, width, hidden));
    let activated = map_rows(&Gelu, &pre, hidden);
    let out = project_onto(x, &activated, w2, b2, width);
    (out, [normed, pre, activated])
}

fn mlp_backward<T: Real>(x: &[T], packed: &[T], g: &[T], kept: [&[T]; 3], layer: Layer) -> Vec<T> {
    let [normed, pre, activated] = kept;
    let [scale, _, w1, _, w2, _] = layer.split(packed);
    let mut grads = packed_grads(&layer);
    let [d_scale, d_shift, d_w1, d_b1, d_w2, d_b2] = split_mut(&layer, &mut grads);
    let d_activated = linear_backward(g, activated, w2, d_w2, d_b2);
    let d_pre = collect_rows(
        pre.len(),
        layer.hidden,
        &GeluGrad {
            pre,
            grad: &d_activated,
            n: layer.hidden,
        },
    );
    let d_normed = linear_backward(&d_pre, normed, w1, d_w1, d_b1);
    let dx = norm_backward(x, g, &d_normed, scale, (d_scale, d_shift));
    [dx, grads].concat()
}

/// Rows of GELU's input gradient.
struct GeluGrad<'a, T> {
    pre: &'a [T],
    grad: &'a [T],
    n: usize,
}

impl<T: Real> Rows<T> for GeluGrad<'_, T> {
    #[inline(always)]
    fn row(&self, index: usize, out: &mut [T]) {
        let range = index * self.n..(index + 1) * self.n;
        GeluBackward.row(&self.pre[range.clone()], &self.grad[range], out);
    }
}

impl CustomOp2 for MlpHalf {
    fn name(&self) -> &'static str {
        "fused-mlp-half"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        packed: &CpuStorage,
        packed_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let name = self.name();
        let layer = Layer::of(
            x_layout,
            packed_layout,
            |_| (self.hidden, self.hidden),
            name,
        )?;
        let shapes = [
            [layer.rows, layer.width],
            [layer.rows, layer.hidden],
            [layer.rows, layer.hidden],
        ];
        let out = same_float!(name, [(x, x, x_layout), (p, packed, packed_layout)] => {
            let (out, kept) = mlp_forward(x, p, layer);
            for ((saved, values), shape) in self.kept.iter().zip(kept).zip(&shapes) {
                saved.keep(values, shape)?;
            }
            out
        });
        Ok((out, x_layout.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        packed: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let kept = self
            .kept
            .iter()
            .map(|saved| saved.get(self.name()))
            .collect::<Result<Vec<_>>>()?;
        let backward = MlpHalfBackward {
            hidden: self.hidden,
            kept,
        };
        let both = x.contiguous()?.apply_op3_no_bwd(
            &packed.contiguous()?,
            &grad.contiguous()?,
            &backward,
        )?;
        split_result(both, x, packed)
    }
}

/// The backward of [`MlpHalf`]: inputs (x, packed, grad); dx then the packed gradient.
struct MlpHalfBackward {
    hidden: usize,
    kept: Vec<Tensor>,
}

impl CustomOp3 for MlpHalfBackward {
    fn name(&self) -> &'static str {
        "fused-mlp-half-backward"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        packed: &CpuStorage,
        packed_layout: &Layout,
        grad: &CpuStorage,
        grad_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let name = self.name();
        let layer = Layer::of(
            x_layout,
            packed_layout,
            |_| (self.hidden, self.hidden),
            name,
        )?;
        if grad_layout.shape() != x_layout.shape() {
            candle_core::bail!("{name}: the gradient has shape {:?}", grad_layout.dims());
        }
        let out = same_float!(
            name,
            [(x, x, x_layout), (p, packed, packed_layout), (g, grad, grad_layout)]
            => with_values(&self.kept, name, |kept| {
                let [normed, pre, activated] = kept else {
                    candle_core::bail!("{name}: expected 3 kept tensors");
                };
                Ok(mlp_backward(x, p, g, [normed, pre, activated], layer))
            })?
        );
        let len = x_layout.shape().elem_count() + layer.packed_len();
        Ok((out, Shape::from(len)))
    }
}
