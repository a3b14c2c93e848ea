//! Row loops shared by the fused CPU ops: kernels mapped over the rows of a tensor and column
//! sums, run in parallel when the tensor is large enough to pay for it.

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, Layout, Result, Shape};
use rayon::prelude::*;

use crate::real::Real;
use crate::reduce::moments;
use crate::storage::same_float;
use crate::wide::{Wide, wide};

/// Elements below which a loop stays on the calling thread.
const PARALLEL_MIN: usize = 1 << 15;

/// A kernel over one tensor, row by row.
pub trait Kernel1: Sync {
    /// Writes the output row for one input row into `out` (uninitialised) and returns it
    /// written, through [`write_row`] (mark it `#[inline(always)]`: it is compiled into the
    /// AVX2 loop).
    fn row<'o, T: Real>(&self, x: &[T], out: OutRow<'o, T>) -> &'o mut [T];
}

/// A kernel over two tensors of one shape, row by row.
pub trait Kernel2: Sync {
    /// Writes the output row for one pair of input rows, as [`Kernel1::row`].
    fn row<'o, T: Real>(&self, a: &[T], b: &[T], out: OutRow<'o, T>) -> &'o mut [T];
}

/// Computes the rows of an output by index.
pub(crate) trait Rows<T>: Sync {
    /// Writes row `index` into `out`, as [`Kernel1::row`].
    fn row<'o>(&self, index: usize, out: OutRow<'o, T>) -> &'o mut [T];
}

/// An output row as a kernel receives it: not initialised. Outputs are not zeroed first:
/// that pass over every fresh buffer was 5% of a t128 LIMoE step (`limoe bench model`).
pub type OutRow<'o, T> = &'o mut [MaybeUninit<T>];

/// Writes `values` into `out`, one per slot, and returns the row initialised. Panics when
/// `values` does not fill the row (a kernel's bug).
#[inline(always)]
pub fn write_row<T>(out: OutRow<'_, T>, values: impl Iterator<Item = T>) -> &mut [T] {
    let mut count = 0;
    for (slot, value) in out.iter_mut().zip(values) {
        slot.write(value);
        count += 1;
    }
    assert_eq!(
        count,
        out.len(),
        "a row kernel left values of its row unwritten"
    );
    // SAFETY: all `out.len()` slots were written just above.
    unsafe { written_row(out) }
}

/// `out` as values, once a loop wrote every slot: for loop bodies that must stay inside the
/// AVX2 function (a closure given to [`write_row`] may be compiled outside it: measured, the
/// GELU kernel ran 1.6x slower).
///
/// # Safety
/// Every slot of `out` must have been written.
#[inline(always)]
pub unsafe fn written_row<T>(out: OutRow<'_, T>) -> &mut [T] {
    // SAFETY: MaybeUninit<T> has T's layout, and the caller initialised every slot.
    unsafe { &mut *(out as *mut [MaybeUninit<T>] as *mut [T]) }
}

/// One chunk of rows of an output, `first` its first row's index.
struct RowChunk<'a, T, R> {
    rows: &'a R,
    out: OutRow<'a, T>,
    first: usize,
    n: usize,
}

impl<T: Real, R: Rows<T>> Wide for RowChunk<'_, T, R> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        for (i, row) in self.out.chunks_mut(self.n).enumerate() {
            let (start, len) = (row.as_ptr().cast::<T>(), row.len());
            let written = self.rows.row(self.first + i, row);
            // What makes the buffer initialised: the row handed back is the one handed in,
            // which only `write_row` (or unsafe code) can return as `&mut [T]`.
            assert!(
                std::ptr::eq(written.as_ptr(), start) && written.len() == len,
                "a row kernel returned another row than its own"
            );
        }
    }
}

/// A new buffer of `len` values, every row of `n` computed by `rows`, in parallel chunks when
/// large enough.
pub(crate) fn collect_rows<T: Real>(len: usize, n: usize, rows: &impl Rows<T>) -> Vec<T> {
    let n = n.max(1);
    let chunk_rows = (PARALLEL_MIN / n).max(1);
    let mut out: Vec<T> = Vec::with_capacity(len);
    let run = |(c, out): (usize, OutRow<'_, T>)| {
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
    // SAFETY: the chunks cover all `len` values, and `RowChunk` checked that every row of
    // each was written.
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
                    let (mean, inv_std) = moments(x);
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
    fn row<'o>(&self, index: usize, out: OutRow<'o, T>) -> &'o mut [T] {
        self.kernel.row(row_of(self.x, self.n, index), out)
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
    fn row<'o>(&self, index: usize, out: OutRow<'o, T>) -> &'o mut [T] {
        let (a, b) = (row_of(self.a, self.n, index), row_of(self.b, self.n, index));
        self.kernel.row(a, b, out)
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
    use super::*;

    /// Writes `len` values of row `index`, whatever the row's length.
    struct Writes(usize);

    impl Rows<f32> for Writes {
        fn row<'o>(&self, index: usize, out: OutRow<'o, f32>) -> &'o mut [f32] {
            write_row(out, (0..self.0).map(|i| (index * 10 + i) as f32))
        }
    }

    #[test]
    fn rows_are_written_in_place_of_zeroing() {
        // Large enough for parallel chunks.
        let n = 8;
        let rows = PARALLEL_MIN;
        let out = collect_rows(rows * n, n, &Writes(n));
        assert_eq!(out.len(), rows * n);
        assert_eq!(&out[..n], &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]);
        assert_eq!(out[(rows - 1) * n + 3], ((rows - 1) * 10 + 3) as f32);
    }

    #[test]
    #[should_panic(expected = "left values of its row unwritten")]
    fn a_kernel_that_leaves_values_unwritten_is_stopped() {
        collect_rows(12, 4, &Writes(3));
    }

    /// Hands back a row of its own instead of the one it was given.
    struct Elsewhere(Vec<f32>);

    impl Rows<f32> for Elsewhere {
        fn row<'o>(&self, _: usize, out: OutRow<'o, f32>) -> &'o mut [f32] {
            let own: &'o mut [f32] = Box::leak(self.0.clone().into_boxed_slice());
            let _ = out;
            own
        }
    }

    #[test]
    #[should_panic(expected = "returned another row than its own")]
    fn a_kernel_that_returns_another_row_is_stopped() {
        collect_rows(8, 4, &Elsewhere(vec![0.0; 4]));
    }
}
