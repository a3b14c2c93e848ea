//! Plumbing shared by the fused CPU ops: typed access to contiguous f32/f64 storage, and row
//! loops that run in parallel when the tensor is large enough to pay for it.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, Layout, Result, Shape};
use num_traits::Float;
use rayon::prelude::*;

/// Elements below which a loop stays on the calling thread.
const PARALLEL_MIN: usize = 1 << 15;

/// The float types the fused ops support.
pub trait Real: Float + Send + Sync + 'static {}
impl Real for f32 {}
impl Real for f64 {}

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

fn contiguous<'a, T>(data: &'a [T], layout: &Layout, op: &str) -> Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("{op}: the input must be contiguous"),
    }
}

fn rows1<T: Real>(kernel: &impl Kernel1, x: &[T], row_len: usize) -> Vec<T> {
    let mut out = vec![T::zero(); x.len()];
    if x.len() >= PARALLEL_MIN {
        out.par_chunks_mut(row_len)
            .zip(x.par_chunks(row_len))
            .for_each(|(o, i)| kernel.row(i, o));
    } else {
        out.chunks_mut(row_len)
            .zip(x.chunks(row_len))
            .for_each(|(o, i)| kernel.row(i, o));
    }
    out
}

fn rows2<T: Real>(kernel: &impl Kernel2, a: &[T], b: &[T], row_len: usize) -> Vec<T> {
    let mut out = vec![T::zero(); a.len()];
    if a.len() >= PARALLEL_MIN {
        out.par_chunks_mut(row_len)
            .zip(a.par_chunks(row_len).zip(b.par_chunks(row_len)))
            .for_each(|(o, (x, y))| kernel.row(x, y, o));
    } else {
        out.chunks_mut(row_len)
            .zip(a.chunks(row_len).zip(b.chunks(row_len)))
            .for_each(|(o, (x, y))| kernel.row(x, y, o));
    }
    out
}

fn row_len(layout: &Layout) -> usize {
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
    let out = match storage {
        CpuStorage::F32(x) => CpuStorage::F32(rows1(kernel, contiguous(x, layout, op)?, n)),
        CpuStorage::F64(x) => CpuStorage::F64(rows1(kernel, contiguous(x, layout, op)?, n)),
        other => candle_core::bail!("{op}: unsupported dtype {:?}", other.dtype()),
    };
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
    let out = match (a, b) {
        (CpuStorage::F32(x), CpuStorage::F32(y)) => CpuStorage::F32(rows2(
            kernel,
            contiguous(x, a_layout, op)?,
            contiguous(y, b_layout, op)?,
            n,
        )),
        (CpuStorage::F64(x), CpuStorage::F64(y)) => CpuStorage::F64(rows2(
            kernel,
            contiguous(x, a_layout, op)?,
            contiguous(y, b_layout, op)?,
            n,
        )),
        (x, y) => candle_core::bail!(
            "{op}: unsupported dtypes {:?} and {:?}",
            x.dtype(),
            y.dtype()
        ),
    };
    Ok((out, a_layout.shape().clone()))
}
