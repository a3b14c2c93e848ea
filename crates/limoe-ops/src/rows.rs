//! Plumbing shared by the fused CPU ops: typed access to contiguous f32/f64 storage, and row
//! loops that run in parallel when the tensor is large enough to pay for it.

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, Layout, Result, Shape};
use num_traits::Float;
use rayon::prelude::*;

/// Elements below which a loop stays on the calling thread.
const PARALLEL_MIN: usize = 1 << 15;

/// The float types the fused ops support.
pub trait Real: Float + candle_core::WithDType + Send + Sync + 'static {
    /// tanh, as a branch-free rational approximation in f32 (a loop of it vectorises; within
    /// a few ulp of the exact value) and libm's `tanh` in f64 (exact, for gradient checks).
    fn fast_tanh(self) -> Self;

    /// e^x, as a range reduction and polynomial in f32 (a loop of it vectorises; within 2 ulp
    /// of the exact value, 0 below e^-87) and libm's `exp` in f64.
    fn fast_exp(self) -> Self;
}

impl Real for f32 {
    #[inline(always)]
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

    #[inline(always)]
    fn fast_exp(self) -> f32 {
        // e^x = 2^k e^r with k = round(x / ln 2), |r| <= ln 2 / 2, and Cephes' expf polynomial
        // for e^r; ln 2 split in two so that x - k ln 2 is exact.
        const LOG2_E: f32 = std::f32::consts::LOG2_E;
        const LN_2_HI: f32 = 0.693_359_4;
        const LN_2_LO: f32 = -2.121_944_4e-4;
        const P: [f32; 6] = [
            1.987_569_1e-4,
            1.398_2e-3,
            8.333_452e-3,
            4.166_579_6e-2,
            1.666_666_5e-1,
            0.5,
        ];
        const LOWEST: f32 = -87.0;
        const HIGHEST: f32 = 88.0;
        let x = self.clamp(LOWEST, HIGHEST);
        let k = (x * LOG2_E + 0.5).floor();
        let r = x - k * LN_2_HI - k * LN_2_LO;
        let poly = P.iter().fold(0.0, |acc, &c| acc * r + c);
        let e_r = poly * r * r + r + 1.0;
        let two_k = f32::from_bits(((k as i32 + 127) as u32) << 23);
        if self < LOWEST { 0.0 } else { e_r * two_k }
    }
}

impl Real for f64 {
    #[inline(always)]
    fn fast_tanh(self) -> f64 {
        self.tanh()
    }

    #[inline(always)]
    fn fast_exp(self) -> f64 {
        self.exp()
    }
}

/// A raw pointer that parallel tasks share; each task writes a disjoint part.
#[derive(Clone, Copy)]
pub(crate) struct Shared<T>(pub *mut T);
// SAFETY: the tasks that receive the pointer write disjoint elements (their users promise
// it) and the buffer outlives the parallel loop.
unsafe impl<T> Send for Shared<T> {}
unsafe impl<T> Sync for Shared<T> {}

impl<T> Shared<T> {
    /// The pointer `offset` elements on (a method, so closures capture the whole `Shared`).
    ///
    /// # Safety
    /// As for `pointer::add`: the offset must stay inside the buffer.
    pub(crate) unsafe fn at(&self, offset: usize) -> *mut T {
        // SAFETY: upheld by the caller.
        unsafe { self.0.add(offset) }
    }
}

/// A kernel over one tensor, row by row.
pub trait Kernel1: Sync {
    /// Computes the output row for one input row (mark it `#[inline(always)]`: it is
    /// compiled into the AVX2 loop).
    fn row<T: Real>(&self, x: &[T], out: &mut [T]);
}

/// A kernel over two tensors of one shape, row by row.
pub trait Kernel2: Sync {
    /// Computes the output row for one pair of input rows (mark it `#[inline(always)]`).
    fn row<T: Real>(&self, a: &[T], b: &[T], out: &mut [T]);
}

/// Computes the rows of an output by index.
pub(crate) trait Rows<T>: Sync {
    /// Writes row `index` into `out` (mark it `#[inline(always)]`).
    fn row(&self, index: usize, out: &mut [T]);
}

/// A loop body compiled for AVX2 + FMA where the CPU has them (the build targets baseline
/// x86-64, whose loops are 4 floats wide and whose reductions stay scalar).
///
/// A trait rather than a closure: a closure is compiled where it is written, without the
/// features, and LLVM does not always inline it into the AVX2 function (measured: the GELU
/// and layer-norm loops ran as 4-wide SSE). `run` and everything it calls must be
/// `#[inline(always)]` or small std iterator code.
pub(crate) trait Wide {
    /// What the loop returns.
    type Output;
    /// The loop (mark it `#[inline(always)]`).
    fn run(self) -> Self::Output;
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
                $(let $value = $crate::rows::contiguous($value, $layout, $op)?;)+
                candle_core::CpuStorage::F32($body)
            }
            ($(candle_core::CpuStorage::F64($value),)+) => {
                $(let $value = $crate::rows::contiguous($value, $layout, $op)?;)+
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

/// Runs `work`, compiled for AVX2 + FMA where the CPU has them.
#[inline]
pub(crate) fn wide<W: Wide>(work: W) -> W::Output {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        #[target_feature(enable = "avx2,fma")]
        fn avx2<W: Wide>(work: W) -> W::Output {
            work.run()
        }
        // SAFETY: the CPU has the features the function is compiled for (checked above).
        return unsafe { avx2(work) };
    }
    work.run()
}

/// Lanes of the partial sums in [`sum`], [`dot`] and [`max`]: one AVX2 register of f32.
const LANES: usize = 8;

/// `x` in blocks of [`LANES`] folded lane-wise into `acc` with `f`, then the lanes and the
/// remainder folded in order: a reduction LLVM can vectorise (a plain fold is a chain of
/// dependent scalar operations, as float addition is not associative).
#[inline(always)]
fn reduce<T: Real>(x: &[T], init: T, f: impl Fn(T, T) -> T) -> T {
    let mut acc = [init; LANES];
    let blocks = x.chunks_exact(LANES);
    let rest = blocks.remainder();
    for block in blocks {
        for (a, &v) in acc.iter_mut().zip(block) {
            *a = f(*a, v);
        }
    }
    let folded = acc.into_iter().fold(init, &f);
    rest.iter().fold(folded, |a, &v| f(a, v))
}

/// The sum of `x`.
#[inline(always)]
pub(crate) fn sum<T: Real>(x: &[T]) -> T {
    reduce(x, T::zero(), |a, b| a + b)
}

/// The largest value of `x` (-inf when empty).
#[inline(always)]
pub(crate) fn max<T: Real>(x: &[T]) -> T {
    reduce(x, T::neg_infinity(), |a, b| if b > a { b } else { a })
}

/// `sum_i a_i b_i`.
#[inline(always)]
pub(crate) fn dot<T: Real>(a: &[T], b: &[T]) -> T {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [T::zero(); LANES];
    let (blocks_a, blocks_b) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (rest_a, rest_b) = (blocks_a.remainder(), blocks_b.remainder());
    for (block_a, block_b) in blocks_a.zip(blocks_b) {
        for ((s, &x), &y) in acc.iter_mut().zip(block_a).zip(block_b) {
            *s += x * y;
        }
    }
    let folded = acc.into_iter().fold(T::zero(), |s, v| s + v);
    rest_a
        .iter()
        .zip(rest_b)
        .fold(folded, |s, (&x, &y)| s + x * y)
}

/// One chunk of rows of an output, `first` its first row's index.
struct RowChunk<'a, T, R> {
    rows: &'a R,
    out: &'a mut [T],
    first: usize,
    n: usize,
}

impl<T: Real, R: Rows<T>> Wide for RowChunk<'_, T, R> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        for (i, row) in self.out.chunks_mut(self.n).enumerate() {
            self.rows.row(self.first + i, row);
        }
    }
}

/// A new buffer of `len` values, every row of `n` computed by `rows`, in parallel chunks when
/// large enough. Each chunk is zeroed by the task that computes it (in cache, just before),
/// not by the allocator on the calling thread.
pub(crate) fn collect_rows<T: Real>(len: usize, n: usize, rows: &impl Rows<T>) -> Vec<T> {
    let n = n.max(1);
    let chunk_rows = (PARALLEL_MIN / n).max(1);
    let mut out: Vec<T> = Vec::with_capacity(len);
    let run = |(c, chunk): (usize, &mut [MaybeUninit<T>])| {
        for value in chunk.iter_mut() {
            value.write(T::zero());
        }
        // SAFETY: every value of the chunk was initialised just above.
        let out = unsafe { &mut *(chunk as *mut [MaybeUninit<T>] as *mut [T]) };
        wide(RowChunk {
            rows,
            out,
            first: c * chunk_rows,
            n,
        })
    };
    let spare = &mut out.spare_capacity_mut()[..len];
    if len >= PARALLEL_MIN {
        spare
            .par_chunks_mut(chunk_rows * n)
            .enumerate()
            .for_each(run);
    } else {
        run((0, spare));
    }
    // SAFETY: the chunks cover all `len` values, each initialised by its task.
    unsafe { out.set_len(len) };
    out
}

/// Row `i` (of `n` values) of `x`.
#[inline(always)]
pub(crate) fn row_of<T>(x: &[T], n: usize, i: usize) -> &[T] {
    &x[i * n..(i + 1) * n]
}

/// Column sums over the rows `first..end` of `a` (rows of `n`): plain, or of
/// `a * normalize(x)` with `x`.
struct PartialSums<'a, T> {
    a: &'a [T],
    x: Option<&'a [T]>,
    rows: std::ops::Range<usize>,
    n: usize,
}

impl<T: Real> Wide for PartialSums<'_, T> {
    type Output = Vec<T>;

    #[inline(always)]
    fn run(self) -> Vec<T> {
        let n = self.n;
        let mut acc = vec![T::zero(); n];
        for r in self.rows {
            let row = row_of(self.a, n, r);
            match self.x {
                None => {
                    for (s, &v) in acc.iter_mut().zip(row) {
                        *s += v;
                    }
                }
                Some(x) => {
                    let x = row_of(x, n, r);
                    let (mean, inv_std) = crate::fused::moments(x);
                    for ((s, &g), &v) in acc.iter_mut().zip(row).zip(x) {
                        *s += g * (v - mean) * inv_std;
                    }
                }
            }
        }
        acc
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
        let sums = wide(PartialSums {
            a,
            x,
            rows: first..end,
            n,
        });
        (g, sums)
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
            .for_each(|(o, p)| *o += p);
    }
    out
}

/// [`Kernel1`] over the rows of `x`.
struct Map1<'a, K, T> {
    kernel: &'a K,
    x: &'a [T],
    n: usize,
}

impl<K: Kernel1, T: Real> Rows<T> for Map1<'_, K, T> {
    #[inline(always)]
    fn row(&self, index: usize, out: &mut [T]) {
        self.kernel.row(row_of(self.x, self.n, index), out);
    }
}

/// [`Kernel2`] over the rows of `a` and `b`.
struct Map2<'a, K, T> {
    kernel: &'a K,
    a: &'a [T],
    b: &'a [T],
    n: usize,
}

impl<K: Kernel2, T: Real> Rows<T> for Map2<'_, K, T> {
    #[inline(always)]
    fn row(&self, index: usize, out: &mut [T]) {
        let (a, b) = (row_of(self.a, self.n, index), row_of(self.b, self.n, index));
        self.kernel.row(a, b, out);
    }
}

/// `kernel` over the rows (of `n`) of `x`.
pub(crate) fn map_rows<T: Real>(kernel: &impl Kernel1, x: &[T], n: usize) -> Vec<T> {
    collect_rows(x.len(), n, &Map1 { kernel, x, n })
}

fn rows2<T: Real>(kernel: &impl Kernel2, a: &[T], b: &[T], n: usize) -> Vec<T> {
    collect_rows(a.len(), n, &Map2 { kernel, a, b, n })
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
    let out = same_float!(op, [(x, storage, layout)] => map_rows(kernel, x, n));
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

    #[test]
    fn fast_exp_is_within_two_ulp() {
        let worst = (-86_999..=87_999)
            .map(|i| i as f32 * 1e-3)
            .map(|x| {
                let exact = f64::from(x).exp();
                (f64::from(x.fast_exp()) - exact).abs() / exact
            })
            .fold(0.0, f64::max);
        assert!(worst < 2.5e-7, "fast exp is off by {worst} (relative)");
        assert_eq!((-1e4f32).fast_exp(), 0.0);
        assert_eq!(f32::NEG_INFINITY.fast_exp(), 0.0);
        assert_eq!(0f32.fast_exp(), 1.0);
    }
}
