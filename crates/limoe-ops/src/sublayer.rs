//! The two residual halves of a pre-LN transformer block as single CPU ops:
//!
//! - attention: `x + out(attention(qkv(layer_norm(x))))`,
//! - MLP: `x + fc2(gelu(fc1(layer_norm(x))))`,
//!
//! each with a hand-written backward. Built from the separate fused ops, a half is four or
//! five nodes of candle's backward, and candle starts the gradient of every node's input as a
//! zeroed buffer and adds into it, in single-threaded zero-and-add passes over the
//! [tokens, width] and [tokens, hidden] intermediates. Here a half is one node; it keeps its
//! intermediates for the backward.
//!
//! The parameters arrive packed into one vector (candle ops have at most three inputs):
//! `[scale, shift, w1, b1, w2, b2]` with `w1` [hidden, width] and `w2` [width, hidden] in
//! `x W^T` layout ([`pack`]); the gradient comes back in the same layout.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};

use crate::fused::{Gelu, GeluBackward, LayerNormBackwardRows, layer_norm};
use crate::linear;
use crate::matmul::{gemm, written};
use crate::real::Real;
use crate::rows::{Kernel2, OutRow, Rows, collect_rows, column_sums, map_rows};
use crate::saved::{Saved, with_values};
use crate::self_attention::{self, Dims};
use crate::storage::same_float;

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

/// Which half block, with the sizes its packed parameters do not tell.
#[derive(Clone, Copy)]
enum Half {
    /// The attention half over sequences of `tokens`.
    Attention { tokens: usize, heads: usize },
    /// The MLP half.
    Mlp { hidden: usize },
}

impl Half {
    /// The sizes of this half on `x` with `packed` parameters.
    fn layer(&self, x: &Layout, packed: &Layout, op: &str) -> Result<Layer> {
        match *self {
            Half::Attention { .. } => Layer::of(x, packed, |w| (3 * w, w), op),
            Half::Mlp { hidden } => Layer::of(x, packed, |_| (hidden, hidden), op),
        }
    }

    /// The attention sizes of this half (an error for the MLP half).
    fn attention(&self, layer: &Layer, op: &str) -> Result<Dims> {
        match *self {
            Half::Attention { tokens, heads } => {
                Dims::new(layer.rows, 3 * layer.width, tokens, heads, op)
            }
            Half::Mlp { .. } => candle_core::bail!("{op}: the MLP half has no attention"),
        }
    }

    /// dx followed by the packed parameters' gradient, from the kept values.
    fn backward<T: Real>(
        &self,
        (x, packed, grad): (&[T], &[T], &[T]),
        kept: &[&[T]],
        layer: Layer,
        op: &str,
    ) -> Result<Vec<T>> {
        match (*self, kept) {
            (Half::Attention { .. }, &[normed, qkv, weights, attended]) => {
                let dims = self.attention(&layer, op)?;
                let kept = [normed, qkv, weights, attended];
                Ok(attention_backward(x, packed, grad, kept, layer, dims))
            }
            (Half::Mlp { .. }, &[normed, pre, activated]) => Ok(mlp_backward(
                x,
                packed,
                grad,
                [normed, pre, activated],
                layer,
            )),
            _ => candle_core::bail!("{op}: {} kept tensors do not fit this half", kept.len()),
        }
    }
}

/// Keeps each value vector with its shape in its [`Saved`].
fn keep_all<T: Real>(
    saved: &[Saved],
    values: impl IntoIterator<Item = (Vec<T>, Vec<usize>)>,
) -> Result<()> {
    for (saved, (values, shape)) in saved.iter().zip(values) {
        saved.keep(values, &shape)?;
    }
    Ok(())
}

/// The gradients of a half block's (x, packed parameters) from the values it kept.
fn half_backward(
    half: Half,
    saved: &[Saved],
    op: &str,
    (x, packed, grad): (&Tensor, &Tensor, &Tensor),
) -> Result<(Option<Tensor>, Option<Tensor>)> {
    let kept = saved
        .iter()
        .map(|saved| saved.get(op))
        .collect::<Result<Vec<_>>>()?;
    let both = x.contiguous()?.apply_op3_no_bwd(
        &packed.contiguous()?,
        &grad.contiguous()?,
        &HalfBackward { half, kept },
    )?;
    let dx = both.narrow(0, 0, x.elem_count())?.reshape(x.shape())?;
    let dp = both.narrow(0, x.elem_count(), packed.elem_count())?;
    Ok((Some(dx), Some(dp)))
}

/// The backward of a half block: inputs (x, packed, grad) and the kept tensors; the result
/// is dx followed by the packed parameters' gradient, flat.
struct HalfBackward {
    half: Half,
    kept: Vec<Tensor>,
}

impl CustomOp3 for HalfBackward {
    fn name(&self) -> &'static str {
        "fused-half-block-backward"
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
        let layer = self.half.layer(x_layout, packed_layout, name)?;
        if grad_layout.shape() != x_layout.shape() {
            candle_core::bail!("{name}: the gradient has shape {:?}", grad_layout.dims());
        }
        let out = same_float!(
            name,
            [(x, x, x_layout), (p, packed, packed_layout), (g, grad, grad_layout)]
            => with_values(&self.kept, name, |kept| {
                self.half.backward((x, p, g), kept, layer, name)
            })?
        );
        let len = x_layout.shape().elem_count() + layer.packed_len();
        Ok((out, Shape::from(len)))
    }
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

impl AttentionHalf {
    fn half(&self) -> Half {
        Half::Attention {
            tokens: self.tokens,
            heads: self.heads,
        }
    }
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
    let qkv = linear::forward(&normed, w_qkv, b_qkv, (rows, width, 3 * width), None);
    let (attended, weights) = self_attention::forward(&qkv, bias, dims, keep);
    let out = linear::forward(&attended, w_out, b_out, (rows, width, width), Some(x));
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
    let d_qkv = self_attention::backward(qkv, weights, &d_attended, dims);
    let d_normed = linear_backward(&d_qkv, normed, w_qkv, d_wqkv, d_bqkv);
    let dx = norm_backward(x, g, &d_normed, scale, (d_scale, d_shift));
    [dx, grads].concat()
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
        let layer = self.half().layer(x_layout, packed_layout, name)?;
        let dims = self.half().attention(&layer, name)?;
        if bias_layout.dims() != [dims.batch, dims.tokens] {
            candle_core::bail!("{name}: the key bias has shape {:?}", bias_layout.dims());
        }
        let keep = self.kept[0].wanted();
        let (rows, width) = (layer.rows, layer.width);
        let out = same_float!(
            name,
            [(x, x, x_layout), (p, packed, packed_layout), (m, bias, bias_layout)]
            => {
                let (out, kept) = attention_forward(x, p, m, layer, dims, keep);
                let weights_shape = vec![dims.batch * dims.heads, dims.tokens, dims.tokens];
                keep_all(&self.kept, [
                    (kept.normed, vec![rows, width]),
                    (kept.qkv, vec![rows, 3 * width]),
                    (kept.weights, weights_shape),
                    (kept.attended, vec![rows, width]),
                ])?;
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
        let (dx, dp) = half_backward(self.half(), &self.kept, self.name(), (x, packed, grad))?;
        Ok((dx, dp, None))
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
    let pre = linear::forward(&normed, w1, b1, (rows, width, hidden), None);
    let activated = map_rows(&Gelu, &pre, hidden);
    let out = linear::forward(&activated, w2, b2, (rows, hidden, width), Some(x));
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
    fn row<'o>(&self, index: usize, out: OutRow<'o, T>) -> &'o mut [T] {
        let range = index * self.n..(index + 1) * self.n;
        GeluBackward.row(&self.pre[range.clone()], &self.grad[range], out)
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
        let half = Half::Mlp {
            hidden: self.hidden,
        };
        let layer = half.layer(x_layout, packed_layout, name)?;
        let (rows, width, hidden) = (layer.rows, layer.width, layer.hidden);
        let out = same_float!(name, [(x, x, x_layout), (p, packed, packed_layout)] => {
            let (out, [normed, pre, activated]) = mlp_forward(x, p, layer);
            keep_all(&self.kept, [
                (normed, vec![rows, width]),
                (pre, vec![rows, hidden]),
                (activated, vec![rows, hidden]),
            ])?;
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
        let half = Half::Mlp {
            hidden: self.hidden,
        };
        half_backward(half, &self.kept, self.name(), (x, packed, grad))
    }
}
