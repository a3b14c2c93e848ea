//! Plumbing shared by the fused CPU ops: typed access to contiguous f32/f64 storage, and row
//! loops that run in parallel when the tensor is large enough to pay for it.

use candle_core::{CpuStorage, Layout, Result, Shape};
use num_traits::Float;
use rayon::prelude::*;

/// Elements below which a loop stays on the calling thread.
const PARALLEL_MIN: usize = 1 << 15;

/// The float types the fused ops support.
pub trait Real: Float + Send + Sync + 'static {
    /// tanh, as a branch-free rational approximation in f32 (a loop of it vectorises; within
    /// a few ulp of the exact value) and libm's `tanh` in f64 (exact, for gradient checks).
    fn fast_tanh(self) -> Self;
}

impl Real for f32 {
    #[inline]
    fn fast_tanh(self) -> f32 {
        // Eigen's `generic_fast_tanh_float`: a [13/6] rational approximation on [-c, c],
        // beyond which tanh is +-1 to f32 precision.
        const CLAMP: f32 = 7.905_311;
        const ALPHA: [f32; 7] = [
            4.893_524_6e-3,
            6.372_619_3e-4,
            1.485_722_4e-5,
            5.122_297e-8,
            -8.604_672e-11,
            2.000_188e-13,
            -2.760_768_5e-16,
        ];
        const BETA: [f32; 4] = [4.893_525e-3, 2.268_434_7e-3, 1.185_347_1e-4, 1.198_258_4e-6];
        let x = self.clamp(-CLAMP, CLAMP);
        let x2 = x * x;
        let p = ALPHA.iter().rev().fold(0.0, |acc, &a| acc * x2 + a) * x;
        let q = BETA.iter().rev().fold(0.0, |acc, &b| acc * x2 + b);
        p / q
    }
}

impl Real for f64 {
    #[inline]
    fn fast_tanh(self) -> f64 {
        self.tanh()
    }
}

/// A kernel over one tensor, row by row.
pub trait Kernel1: Sync {
    /// Computes the output row for one input row.
    fn row<T: Real>(&self, x: &[T], out: &mut [T]);
}

/// A kernel over two tensors of one shape, row by row.
pub trait Kernel2: Sync {
    /// Computes the output row for one pair of input rows.
    fn row<T: Real>(&self, a: &[T], b: &[T], out: &mut [T]);
}

/// The contiguous values of a storage, or an error naming `op`.
pub(crate) fn contiguous<'a, T>(data: &'a [T], layout: &Layout, op: &str) -> Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("{op}: the input must be contiguous"),
    }
}

/// Evaluates `$body` with each `$value` bound to the contiguous values of `($storage,
/// $layout)` when the storages are all f32 or all f64, and wraps the result back into a
/// storage of that type; any other mix of types is an error naming `$op`.
macro_rules! same_float {
    ($op:expr, [$(($value:ident, $storage:expr, $layout:expr)),+ $(,)?] => $body:expr) => {
        match ($($storage,)+) {
            ($(candle_core::CpuStorage::F32($value),)+) => {
                $(let $value = $crate::ops::kernel::contiguous($value, $layout, $op)?;)+
                candle_core::CpuStorage::F32($body)
            }
            ($(candle_core::CpuStorage::F64($value),)+) => {
                $(let $value = $crate::ops::kernel::contiguous($value, $layout, $op)?;)+
                candle_core::CpuStorage::F64($body)
            }
            _ => candle_core::bail!("{}: the inputs must be all f32 or all f64", $op),
        }
    };
}
pub(crate) use same_float;

/// Whether this CPU runs the AVX2 + FMA versions of the loops.
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx2() -> bool {
    use std::sync::OnceLock;
    static AVX2: OnceLock<bool> = OnceLock::new();
    *AVX2.get_or_init(|| {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    })
}

/// Runs `f`, compiled for AVX2 + FMA where the CPU has them (the build targets baseline
/// x86-64, whose loops are 4 floats wide). `f` must be inlinable: a closure over a
/// `#[inline]` kernel.
#[inline]
pub(crate) fn wide<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        // SAFETY: the CPU has the features the function is compiled for (checked above).
        return unsafe { avx2(f) };
    }
    f()
}

/// Calls `f(row index, row)` on every row of `out` (rows of `n`), in parallel chunks when
/// large enough, each chunk compiled wide.
pub(crate) fn for_rows<T: Real>(out: &mut [T], n: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    let n = n.max(1);
    let chunk_rows = (PARALLEL_MIN / n).max(1);
    let run = |(c, o): (usize, &mut [T])| {
        wide(|| {
            o.chunks_mut(n)
                .enumerate()
                .for_each(|(r, row)| f(c * chunk_rows + r, row))
        })
    };
    if out.len() >= PARALLEL_MIN {
        out.par_chunks_mut(chunk_rows * n).enumerate().for_each(run);
    } else {
        run((0, out));
    }
}

/// Column sums of `a` [groups, rows, n] over its rows -> [groups, n]; with `x`, the sums of
/// `a * normalize(x)` instead (each row of `x` normalised to zero mean, unit variance).
pub(crate) fn column_sums<T: Real>(a: &[T], x: Option<&[T]>, groups: usize, n: usize) -> Vec<T> {
    let n = n.max(1);
    let groups = groups.max(1);
    let rows = a.len() / (groups * n);
    let chunk_rows = (PARALLEL_MIN / n).max(1);
    let per_group = rows.div_ceil(chunk_rows).max(1);
    let partial = |task: usize| -> (usize, Vec<T>) {
        let g = task / per_group;
        let first = g * rows + (task % per_group) * chunk_rows;
        let end = (g * rows + rows).min(first + chunk_rows);
        let mut acc = vec![T::zero(); n];
        wide(|| {
            for r in first..end {
                let row = &a[r * n..(r + 1) * n];
                match x {
                    None => acc.iter_mut().zip(row).for_each(|(s, &v)| *s = *s + v),
                    Some(x) => {
                        let x = &x[r * n..(r + 1) * n];
                        let (mean, inv_std) = super::fused::moments(x);
                        acc.iter_mut()
                            .zip(row)
                            .zip(x)
                            .for_each(|((s, &g), &v)| *s = *s + g * (v - mean) * inv_std);
                    }
                }
            }
        });
        (g, acc)
    };
    let tasks = groups * per_group;
    let parts: Vec<(usize, Vec<T>)> = if a.len() >= PARALLEL_MIN {
        (0..tasks).into_par_iter().map(partial).collect()
    } else {
        (0..tasks).map(partial).collect()
    };
    let mut out = vec![T::zero(); groups * n];
    for (g, part) in parts {
        out[g * n..(g + 1) * n]
            .iter_mut()
            .zip(part)
            .for_each(|(o, p)| *o = *o + p);
    }
    out
}

fn rows1<T: Real>(kernel: &impl Kernel1, x: &[T], row_len: usize) -> Vec<T> {
    let mut out = vec![T::zero(); x.len()];
    let chunk = row_len * (PARALLEL_MIN / row_len).max(1);
    let run = |(o, i): (&mut [T], &[T])| {
        wide(|| {
            o.chunks_mut(row_len)
                .zip(i.chunks(row_len))
                .for_each(|(o, i)| kernel.row(i, o))
        })
    };
    if x.len() >= PARALLEL_MIN {
        out.par_chunks_mut(chunk)
            .zip(x.par_chunks(chunk))
            .for_each(run);
    } else {
        run((&mut out, x));
    }
    out
}

fn rows2<T: Real>(kernel: &impl Kernel2, a: &[T], b: &[T], row_len: usize) -> Vec<T> {
    let mut out = vec![T::zero(); a.len()];
    let chunk = row_len * (PARALLEL_MIN / row_len).max(1);
    let run = |(o, (x, y)): (&mut [T], (&[T], &[T]))| {
        wide(|| {
            o.chunks_mut(row_len)
                .zip(x.chunks(row_len).zip(y.chunks(row_len)))
                .for_each(|(o, (x, y))| kernel.row(x, y, o))
        })
    };
    if a.len() >= PARALLEL_MIN {
        out.par_chunks_mut(chunk)
            .zip(a.par_chunks(chunk).zip(b.par_chunks(chunk)))
            .for_each(run);
    } else {
        run((&mut out, (a, b)));
    }
    out
}

/// The length of the last dimension (1 for a scalar).
pub(crate) fn row_len(layout: &Layout) -> usize {
    layout.shape().dims().last().copied().unwrap_or(1).max(1)
}

/// Runs `kernel` over the rows (last dimension) of one f32 or f64 tensor.
pub fn apply1(
    kernel: &impl Kernel1,
    op: &str,
    storage: &CpuStorage,
    layout: &Layout,
) -> Result<(CpuStorage, Shape)> {
    let n = row_len(layout);
    let out = same_float!(op, [(x, storage, layout)] => rows1(kernel, x, n));
    Ok((out, layout.shape().clone()))
}

/// Runs `kernel` over the rows of two f32 or f64 tensors of the same shape and dtype.
pub fn apply2(
    kernel: &impl Kernel2,
    op: &str,
    (a, a_layout): (&CpuStorage, &Layout),
    (b, b_layout): (&CpuStorage, &Layout),
) -> Result<(CpuStorage, Shape)> {
    if a_layout.shape() != b_layout.shape() {
        candle_core::bail!(
            "{op}: shapes differ ({:?} and {:?})",
            a_layout.dims(),
            b_layout.dims()
        );
    }
    let n = row_len(a_layout);
    let out = same_float!(op, [(x, a, a_layout), (y, b, b_layout)] => rows2(kernel, x, y, n));
    Ok((out, a_layout.shape().clone()))
}

#[cfg(test)]
mod tests {
    use super::Real;

    #[test]
    fn fast_tanh_is_within_a_few_ulp() {
        let worst = (-40_000..=40_000)
            .map(|i| i as f32 * 2.5e-4)
            .map(|x| (f64::from(x.fast_tanh()) - f64::from(x).tanh()).abs())
            .fold(0.0, f64::max);
        assert!(worst < 5e-7, "fast tanh is off by {worst}");
        assert!((30f32.fast_tanh() - 1.0).abs() < 1e-6);
        assert!((-30f32).fast_tanh() + 1.0 < 1e-6);
    }
}
