//! GELU, layer normalisation (with and without its affine part), softmax over the last
//! dimension and bias addition as single-loop CPU kernels with hand-written backward passes.
//!
//! Built from candle primitives these ops create many temporaries and broadcast reductions;
//! the backward of candle's GELU alone costs ~9x its forward. Each op here is one
//! pass forward and one pass backward.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};

use crate::real::{Real, constant};
use crate::reduce::{dot, max, moments, sum};
use crate::rows::{
    Kernel1, Kernel2, OutRow, Rows, apply1, apply2, collect_rows, column_sums, row_len, row_of,
    write_row, written_row,
};
use crate::storage::same_float;

/// sqrt(2 / pi), the GELU tanh approximation's scale.
const GELU_SCALE: f64 = 0.797_884_560_802_865_4;
/// The cubic coefficient of the GELU tanh approximation.
const GELU_CUBIC: f64 = 0.044_715;

/// Wraps a backward kernel as a (non-differentiable) two-input op.
struct Backward<K: Kernel2> {
    name: &'static str,
    kernel: K,
}

impl<K: Kernel2> CustomOp2 for Backward<K> {
    fn name(&self) -> &'static str {
        self.name
    }

    fn cpu_fwd(
        &self,
        a: &CpuStorage,
        a_layout: &Layout,
        b: &CpuStorage,
        b_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        apply2(&self.kernel, self.name, (a, a_layout), (b, b_layout))
    }
}

fn backward<K: Kernel2>(
    name: &'static str,
    kernel: K,
    a: &Tensor,
    grad: &Tensor,
) -> Result<Tensor> {
    a.contiguous()?
        .apply_op2_no_bwd(&grad.contiguous()?, &Backward { name, kernel })
}

/// The gradient at GELU's input `x` from the gradient `grad` at its output.
pub(crate) fn gelu_backward(x: &Tensor, grad: &Tensor) -> Result<Tensor> {
    backward("fused-gelu-backward", GeluBackward, x, grad)
}

/// GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
pub struct Gelu;

impl Kernel1 for Gelu {
    #[inline(always)]
    fn row<'o, T: Real>(&self, x: &[T], out: OutRow<'o, T>) -> &'o mut [T] {
        let (half, scale, cubic): (T, T, T) =
            (constant(0.5), constant(GELU_SCALE), constant(GELU_CUBIC));
        assert_eq!(x.len(), out.len(), "gelu: rows of different lengths");
        for (o, &v) in out.iter_mut().zip(x) {
            o.write(half * v * (T::one() + (scale * (v + cubic * v * v * v)).fast_tanh()));
        }
        // SAFETY: out is as long as x, so the loop wrote every slot.
        unsafe { written_row(out) }
    }
}

/// d GELU(x) / dx times the incoming gradient; inputs (x, grad).
pub(crate) struct GeluBackward;

impl Kernel2 for GeluBackward {
    #[inline(always)]
    fn row<'o, T: Real>(&self, x: &[T], grad: &[T], out: OutRow<'o, T>) -> &'o mut [T] {
        let (half, scale, cubic): (T, T, T) =
            (constant(0.5), constant(GELU_SCALE), constant(GELU_CUBIC));
        let three_cubic = constant::<T>(3.0) * cubic;
        let len = out.len();
        assert!(
            x.len() == len && grad.len() == len,
            "gelu backward: rows of different lengths"
        );
        for ((o, &v), &g) in out.iter_mut().zip(x).zip(grad) {
            let t = (scale * (v + cubic * v * v * v)).fast_tanh();
            let dt = (T::one() - t * t) * scale * (T::one() + three_cubic * v * v);
            o.write(g * (half * (T::one() + t) + half * v * dt));
        }
        // SAFETY: x and grad are as long as out, so the loop wrote every slot.
        unsafe { written_row(out) }
    }
}

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "fused-gelu"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        apply1(self, self.name(), storage, layout)
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        gelu_backward(arg, grad).map(Some)
    }
}

/// (x - mean) / sqrt(var + eps) over the last dimension.
pub struct Normalize;

impl Kernel1 for Normalize {
    #[inline(always)]
    fn row<'o, T: Real>(&self, x: &[T], out: OutRow<'o, T>) -> &'o mut [T] {
        let (mean, inv_std) = moments(x);
        write_row(out, x.iter().map(|&v| (v - mean) * inv_std))
    }
}

/// dx = (g - mean(g) - y mean(g y)) / std; inputs (x, grad).
struct NormalizeBackward;

impl Kernel2 for NormalizeBackward {
    #[inline(always)]
    fn row<'o, T: Real>(&self, x: &[T], grad: &[T], out: OutRow<'o, T>) -> &'o mut [T] {
        normalize_backward(x, grad, None, out)
    }
}

/// The gradient of a layer norm's input, its output's gradient `grad` times `scale` when
/// there is one: dx = (g - mean(g) - y mean(g y)) / std with g = grad * scale.
#[inline(always)]
fn normalize_backward<'o, T: Real>(
    x: &[T],
    grad: &[T],
    scale: Option<&[T]>,
    out: OutRow<'o, T>,
) -> &'o mut [T] {
    let (mean, inv_std) = moments(x);
    let n = constant::<T>(x.len() as f64);
    // out = g first, then y in the second pass.
    let out = match scale {
        Some(scale) => write_row(out, grad.iter().zip(scale).map(|(&g, &s)| g * s)),
        None => write_row(out, grad.iter().copied()),
    };
    let mean_g = sum(out) / n;
    // sum g y = (sum g x - mean sum g) / std.
    let mean_gy = (dot(out, x) - mean * mean_g * n) * inv_std / n;
    for (o, &v) in out.iter_mut().zip(x) {
        let y = (v - mean) * inv_std;
        *o = (*o - mean_g - y * mean_gy) * inv_std;
    }
    out
}

impl CustomOp1 for Normalize {
    fn name(&self) -> &'static str {
        "fused-normalize"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        apply1(self, self.name(), storage, layout)
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        backward("fused-normalize-backward", NormalizeBackward, arg, grad).map(Some)
    }
}

/// Softmax over the last dimension.
pub struct Softmax;

impl Kernel1 for Softmax {
    #[inline(always)]
    fn row<'o, T: Real>(&self, x: &[T], out: OutRow<'o, T>) -> &'o mut [T] {
        let out = write_row(out, x.iter().copied());
        softmax_in_place(out);
        out
    }
}

/// Replaces a row by its softmax.
#[inline(always)]
pub(crate) fn softmax_in_place<T: Real>(row: &mut [T]) {
    let max = max(row);
    for v in row.iter_mut() {
        *v = (*v - max).fast_exp();
    }
    let inv = sum(row).recip();
    for v in row.iter_mut() {
        *v *= inv;
    }
}

/// dx = y (g - sum(g y)); inputs (y, grad).
struct SoftmaxBackward;

impl Kernel2 for SoftmaxBackward {
    #[inline(always)]
    fn row<'o, T: Real>(&self, y: &[T], grad: &[T], out: OutRow<'o, T>) -> &'o mut [T] {
        let dot = dot(y, grad);
        write_row(out, y.iter().zip(grad).map(|(&p, &g)| p * (g - dot)))
    }
}

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "fused-softmax"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        apply1(self, self.name(), storage, layout)
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        backward("fused-softmax-backward", SoftmaxBackward, res, grad).map(Some)
    }
}

/// A per-column vector `v` [groups, n] applied to the rows of `x` [groups, rows, n]:
/// the row's group is `row / rows_per_group`.
fn per_group<T>(v: &[T], n: usize, rows_per_group: usize, row: usize) -> &[T] {
    let g = row / rows_per_group.max(1);
    &v[g * n..(g + 1) * n]
}

/// `x + bias` where `x` is [groups, rows, n] (any leading shape when `groups` = 1) and `bias`
/// [groups, n]; the backward sums the incoming gradient over rows in one pass.
pub struct BiasAdd;

/// Rows of `x + bias` (of `bias` alone without `x`), the bias row of the row's group.
struct BiasRows<'a, T> {
    x: Option<&'a [T]>,
    bias: &'a [T],
    n: usize,
    rows_per_group: usize,
}

impl<T: Real> Rows<T> for BiasRows<'_, T> {
    #[inline(always)]
    fn row<'o>(&self, index: usize, out: OutRow<'o, T>) -> &'o mut [T] {
        let b = per_group(self.bias, self.n, self.rows_per_group, index);
        match self.x {
            Some(x) => write_row(
                out,
                row_of(x, self.n, index).iter().zip(b).map(|(&v, &b)| v + b),
            ),
            None => write_row(out, b.iter().copied()),
        }
    }
}

/// `rows` rows of `n`: `x + bias`, or the bias alone without `x`, where `bias` [groups, n]
/// gives one row per group of `rows / groups` rows.
pub(crate) fn bias_rows<T: Real>(x: Option<&[T]>, bias: &[T], rows: usize, n: usize) -> Vec<T> {
    let groups = (bias.len() / n.max(1)).max(1);
    let bias_rows = BiasRows {
        x,
        bias,
        n,
        rows_per_group: rows / groups,
    };
    collect_rows(rows * n, n, &bias_rows)
}

impl CustomOp2 for BiasAdd {
    fn name(&self) -> &'static str {
        "fused-bias-add"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        bias: &CpuStorage,
        bias_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let n = row_len(bias_layout);
        if !x_layout
            .shape()
            .elem_count()
            .is_multiple_of(bias_layout.shape().elem_count())
            || row_len(x_layout) != n
        {
            candle_core::bail!(
                "{}: bias {:?} does not fit x {:?}",
                self.name(),
                bias_layout.dims(),
                x_layout.dims()
            );
        }
        let out = same_float!(self.name(), [(x, x, x_layout), (b, bias, bias_layout)]
            => bias_rows(Some(x), b, x.len() / n, n));
        Ok((out, x_layout.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let groups = bias.elem_count() / bias.dims().last().copied().unwrap_or(1).max(1);
        let sums = grad
            .contiguous()?
            .apply_op1_no_bwd(&ColumnSums { groups })?
            .reshape(bias.shape())?;
        Ok((Some(grad.clone()), Some(sums)))
    }
}

/// Sums over rows: [groups, rows, n] -> [groups, n].
pub(crate) struct ColumnSums {
    /// Number of groups.
    pub groups: usize,
}

impl CustomOp1 for ColumnSums {
    fn name(&self) -> &'static str {
        "fused-column-sums"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let n = row_len(layout);
        let out = same_float!(self.name(), [(x, storage, layout)]
            => column_sums(x, None, self.groups, n));
        Ok((out, Shape::from((self.groups, n))))
    }
}

/// Layer normalisation with its affine part: normalize(x) * scale + shift over the last
/// dimension; `scale` and `shift` are [n].
pub struct LayerNorm;

/// Rows of `normalize(x) * scale + shift`.
struct LayerNormRows<'a, T> {
    x: &'a [T],
    scale: &'a [T],
    shift: &'a [T],
}

impl<T: Real> Rows<T> for LayerNormRows<'_, T> {
    #[inline(always)]
    fn row<'o>(&self, index: usize, out: OutRow<'o, T>) -> &'o mut [T] {
        let x = row_of(self.x, self.scale.len(), index);
        let (mean, inv_std) = moments(x);
        let values = x.iter().zip(self.scale).zip(self.shift);
        write_row(
            out,
            values.map(|((&v, &s), &b)| (v - mean) * inv_std * s + b),
        )
    }
}

/// `normalize(x) * scale + shift` over rows of `n`.
pub(crate) fn layer_norm<T: Real>(x: &[T], scale: &[T], shift: &[T], n: usize) -> Vec<T> {
    collect_rows(x.len(), n, &LayerNormRows { x, scale, shift })
}

impl CustomOp3 for LayerNorm {
    fn name(&self) -> &'static str {
        "fused-layer-norm"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        scale: &CpuStorage,
        scale_layout: &Layout,
        shift: &CpuStorage,
        shift_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let n = row_len(x_layout);
        if scale_layout.shape().elem_count() != n || shift_layout.shape().elem_count() != n {
            candle_core::bail!("{}: scale and shift must have {n} values", self.name());
        }
        let name = self.name();
        let out = same_float!(
            name,
            [(x, x, x_layout), (s, scale, scale_layout), (b, shift, shift_layout)]
            => layer_norm(x, s, b, n)
        );
        Ok((out, x_layout.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        scale: &Tensor,
        _shift: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let x = x.contiguous()?;
        let dx = x.apply_op3_no_bwd(&grad, &scale.contiguous()?, &LayerNormBackward)?;
        let dscale = x
            .apply_op2_no_bwd(&grad, &NormalizedColumnProducts)?
            .reshape(scale.shape())?;
        let dshift = grad
            .apply_op1_no_bwd(&ColumnSums { groups: 1 })?
            .reshape(scale.shape())?;
        Ok((Some(dx), Some(dscale), Some(dshift)))
    }
}

/// The gradient of a layer norm's input; inputs (x, grad, scale).
struct LayerNormBackward;

/// Rows of a layer norm's input gradient, plus `residual`'s rows when given (the gradient
/// reaching the same input around the layer norm).
pub(crate) struct LayerNormBackwardRows<'a, T> {
    /// The layer norm's input.
    pub x: &'a [T],
    /// The gradient at its output.
    pub grad: &'a [T],
    /// Its scale.
    pub scale: &'a [T],
    /// A gradient to add.
    pub residual: Option<&'a [T]>,
}

impl<T: Real> Rows<T> for LayerNormBackwardRows<'_, T> {
    #[inline(always)]
    fn row<'o>(&self, index: usize, out: OutRow<'o, T>) -> &'o mut [T] {
        let n = self.scale.len();
        let (x, grad) = (row_of(self.x, n, index), row_of(self.grad, n, index));
        let out = normalize_backward(x, grad, Some(self.scale), out);
        if let Some(residual) = self.residual {
            for (o, &r) in out.iter_mut().zip(row_of(residual, n, index)) {
                *o += r;
            }
        }
        out
    }
}

impl CustomOp3 for LayerNormBackward {
    fn name(&self) -> &'static str {
        "fused-layer-norm-backward"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        grad: &CpuStorage,
        grad_layout: &Layout,
        scale: &CpuStorage,
        scale_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let n = row_len(x_layout);
        if grad_layout.shape() != x_layout.shape() || scale_layout.shape().elem_count() != n {
            candle_core::bail!(
                "{}: x {:?}, gradient {:?} and scale {:?} do not fit",
                self.name(),
                x_layout.dims(),
                grad_layout.dims(),
                scale_layout.dims()
            );
        }
        let out = same_float!(
            self.name(),
            [(x, x, x_layout), (grad, grad, grad_layout), (scale, scale, scale_layout)]
            => collect_rows(x.len(), n, &LayerNormBackwardRows { x, grad, scale, residual: None })
        );
        Ok((out, x_layout.shape().clone()))
    }
}

/// `sum_rows normalize(x) * grad`: the scale's gradient; inputs (x, grad).
struct NormalizedColumnProducts;

impl CustomOp2 for NormalizedColumnProducts {
    fn name(&self) -> &'static str {
        "fused-normalized-column-products"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        grad: &CpuStorage,
        grad_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let n = row_len(x_layout);
        let name = self.name();
        let out = same_float!(name, [(x, x, x_layout), (g, grad, grad_layout)]
            => column_sums(g, Some(x), 1, n));
        Ok((out, Shape::from(n)))
    }
}
