//! GELU, layer normalisation (with and without its affine part), softmax over the last
//! dimension and bias addition as single-loop CPU kernels with hand-written backward passes.
//!
//! Built from candle primitives these ops create many temporaries and broadcast reductions;
//! the backward of candle's GELU alone costs ~9x its forward (PERF-NOTES.md). Each op here
//! is one pass forward and one pass backward.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};

use super::kernel::{
    Kernel1, Kernel2, Real, apply1, apply2, column_sums, for_rows, row_len, same_float,
};

fn constant<T: Real>(x: f64) -> T {
    T::from(x).unwrap_or_else(T::zero)
}

/// sqrt(2 / pi), the GELU tanh approximation's scale.
const GELU_SCALE: f64 = 0.797_884_560_802_865_4;
/// The cubic coefficient of the GELU tanh approximation.
const GELU_CUBIC: f64 = 0.044_715;
/// Epsilon of the layer norm's variance.
pub const LAYER_NORM_EPS: f64 = 1e-6;

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

/// GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
pub struct Gelu;

impl Kernel1 for Gelu {
    #[inline]
    fn row<T: Real>(&self, x: &[T], out: &mut [T]) {
        let (half, scale, cubic): (T, T, T) =
            (constant(0.5), constant(GELU_SCALE), constant(GELU_CUBIC));
        for (o, &v) in out.iter_mut().zip(x) {
            *o = half * v * (T::one() + (scale * (v + cubic * v * v * v)).fast_tanh());
        }
    }
}

/// d GELU(x) / dx times the incoming gradient; inputs (x, grad).
struct GeluBackward;

impl Kernel2 for GeluBackward {
    #[inline]
    fn row<T: Real>(&self, x: &[T], grad: &[T], out: &mut [T]) {
        let (half, scale, cubic): (T, T, T) =
            (constant(0.5), constant(GELU_SCALE), constant(GELU_CUBIC));
        let three_cubic = constant::<T>(3.0) * cubic;
        for ((o, &v), &g) in out.iter_mut().zip(x).zip(grad) {
            let t = (scale * (v + cubic * v * v * v)).fast_tanh();
            let dt = (T::one() - t * t) * scale * (T::one() + three_cubic * v * v);
            *o = g * (half * (T::one() + t) + half * v * dt);
        }
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
        backward("fused-gelu-backward", GeluBackward, arg, grad).map(Some)
    }
}

/// (x - mean) / sqrt(var + eps) over the last dimension.
pub struct Normalize;

#[inline]
pub(crate) fn moments<T: Real>(x: &[T]) -> (T, T) {
    let n = constant::<T>(x.len() as f64);
    let mean = x.iter().fold(T::zero(), |s, &v| s + v) / n;
    let var = x
        .iter()
        .fold(T::zero(), |s, &v| s + (v - mean) * (v - mean))
        / n;
    (mean, (var + constant(LAYER_NORM_EPS)).sqrt().recip())
}

impl Kernel1 for Normalize {
    #[inline]
    fn row<T: Real>(&self, x: &[T], out: &mut [T]) {
        let (mean, inv_std) = moments(x);
        for (o, &v) in out.iter_mut().zip(x) {
            *o = (v - mean) * inv_std;
        }
    }
}

/// dx = (g - mean(g) - y mean(g y)) / std; inputs (x, grad).
struct NormalizeBackward;

impl Kernel2 for NormalizeBackward {
    #[inline]
    fn row<T: Real>(&self, x: &[T], grad: &[T], out: &mut [T]) {
        let (mean, inv_std) = moments(x);
        let n = constant::<T>(x.len() as f64);
        let (mut sum_g, mut sum_gy) = (T::zero(), T::zero());
        for (&v, &g) in x.iter().zip(grad) {
            sum_g = sum_g + g;
            sum_gy = sum_gy + g * (v - mean) * inv_std;
        }
        let (mean_g, mean_gy) = (sum_g / n, sum_gy / n);
        for ((o, &v), &g) in out.iter_mut().zip(x).zip(grad) {
            let y = (v - mean) * inv_std;
            *o = (g - mean_g - y * mean_gy) * inv_std;
        }
    }
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
    #[inline]
    fn row<T: Real>(&self, x: &[T], out: &mut [T]) {
        let max = x.iter().fold(T::neg_infinity(), |m, &v| m.max(v));
        let mut sum = T::zero();
        for (o, &v) in out.iter_mut().zip(x) {
            *o = (v - max).exp();
            sum = sum + *o;
        }
        let inv = sum.recip();
        out.iter_mut().for_each(|o| *o = *o * inv);
    }
}

/// dx = y (g - sum(g y)); inputs (y, grad).
struct SoftmaxBackward;

impl Kernel2 for SoftmaxBackward {
    #[inline]
    fn row<T: Real>(&self, y: &[T], grad: &[T], out: &mut [T]) {
        let dot = y.iter().zip(grad).fold(T::zero(), |s, (&p, &g)| s + p * g);
        for ((o, &p), &g) in out.iter_mut().zip(y).zip(grad) {
            *o = p * (g - dot);
        }
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

fn bias_add<T: Real>(x: &[T], bias: &[T], n: usize) -> Vec<T> {
    let rows_per_group = x.len() / bias.len().max(1);
    let mut out = x.to_vec();
    for_rows(&mut out, n, |row, o| {
        let b = per_group(bias, n, rows_per_group, row);
        o.iter_mut().zip(b).for_each(|(o, &b)| *o = *o + b);
    });
    out
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
            => bias_add(x, b, n));
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

fn layer_norm<T: Real>(x: &[T], scale: &[T], shift: &[T], n: usize) -> Vec<T> {
    let mut out = vec![T::zero(); x.len()];
    for_rows(&mut out, n, |row, o| {
        let x = &x[row * n..(row + 1) * n];
        let (mean, inv_std) = moments(x);
        for (((o, &v), &s), &b) in o.iter_mut().zip(x).zip(scale).zip(shift) {
            *o = (v - mean) * inv_std * s + b;
        }
    });
    out
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
        let dx = backward(
            "fused-normalize-backward",
            NormalizeBackward,
            &x,
            &grad.broadcast_mul(scale)?,
        )?;
        let dscale = x
            .apply_op2_no_bwd(&grad, &NormalizedColumnProducts)?
            .reshape(scale.shape())?;
        let dshift = grad
            .apply_op1_no_bwd(&ColumnSums { groups: 1 })?
            .reshape(scale.shape())?;
        Ok((Some(dx), Some(dscale), Some(dshift)))
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
