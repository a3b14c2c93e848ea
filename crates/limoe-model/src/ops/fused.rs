//! GELU, layer normalisation (without its affine part) and softmax over the last dimension as
//! single-loop CPU kernels with hand-written backward passes.
//!
//! Built from candle primitives these ops create many temporaries and broadcast reductions;
//! the backward of candle's GELU alone costs ~9x its forward (PERF-NOTES.md). Each op here
//! is one pass forward and one pass backward.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};

use super::kernel::{Kernel1, Kernel2, Real, apply1, apply2};

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
    fn row<T: Real>(&self, x: &[T], out: &mut [T]) {
        let (half, scale, cubic): (T, T, T) =
            (constant(0.5), constant(GELU_SCALE), constant(GELU_CUBIC));
        for (o, &v) in out.iter_mut().zip(x) {
            *o = half * v * (T::one() + (scale * (v + cubic * v * v * v)).tanh());
        }
    }
}

/// d GELU(x) / dx times the incoming gradient; inputs (x, grad).
struct GeluBackward;

impl Kernel2 for GeluBackward {
    fn row<T: Real>(&self, x: &[T], grad: &[T], out: &mut [T]) {
        let (half, scale, cubic): (T, T, T) =
            (constant(0.5), constant(GELU_SCALE), constant(GELU_CUBIC));
        let three_cubic = constant::<T>(3.0) * cubic;
        for ((o, &v), &g) in out.iter_mut().zip(x).zip(grad) {
            let t = (scale * (v + cubic * v * v * v)).tanh();
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

fn moments<T: Real>(x: &[T]) -> (T, T) {
    let n = constant::<T>(x.len() as f64);
    let mean = x.iter().fold(T::zero(), |s, &v| s + v) / n;
    let var = x
        .iter()
        .fold(T::zero(), |s, &v| s + (v - mean) * (v - mean))
        / n;
    (mean, (var + constant(LAYER_NORM_EPS)).sqrt().recip())
}

impl Kernel1 for Normalize {
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
