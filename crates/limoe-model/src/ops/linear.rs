//! The linear layer `x W^T + b` as one CPU op: one matmul writing onto the broadcast bias, and
//! a backward that computes dx, dW and db directly.
//!
//! Built from candle primitives it is three nodes (the weight's transpose, the matmul, the
//! bias add), and candle's backward starts each node's gradient as zeros and adds into it:
//! for a layer's output that is a zeroed buffer and an add of the output's size, and a strided
//! add for the transposed weight. Here it is one node.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};

use super::fused::ColumnSums;
use super::kernel::{Real, contiguous};

/// Multiply-adds above which a matmul runs on every thread.
const PARALLEL_MIN: usize = 1 << 18;

/// `dst (+)= lhs @ rhs` for row-major strided operands `(pointer, row stride, column stride)`
/// of sizes m x k and k x n.
///
/// # Safety
/// Every operand must lie inside its buffer with the given strides; `dst` must not alias the
/// others.
pub(crate) unsafe fn gemm<T: Real>(
    (m, n, k): (usize, usize, usize),
    dst: (*mut T, usize, usize),
    accumulate: bool,
    lhs: (*const T, usize, usize),
    rhs: (*const T, usize, usize),
    beta: T,
    parallel: bool,
) {
    let parallelism = if parallel && m * n * k >= PARALLEL_MIN {
        gemm::Parallelism::Rayon(rayon::current_num_threads())
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: upheld by the caller; gemm reads lhs and rhs and writes dst only.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.0,
            dst.2 as isize,
            dst.1 as isize,
            accumulate,
            lhs.0,
            lhs.2 as isize,
            lhs.1 as isize,
            rhs.0,
            rhs.2 as isize,
            rhs.1 as isize,
            T::one(),
            beta,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// `x W^T + b` for `x` [R, in], `W` [out, in], `b` [out].
pub struct Linear;

fn rows_cols(layout: &Layout, op: &str) -> Result<(usize, usize)> {
    match layout.dims() {
        &[r, c] => Ok((r, c)),
        dims => candle_core::bail!("{op}: expected a matrix, got {dims:?}"),
    }
}

fn forward<T: Real>(
    x: &[T],
    w: &[T],
    b: &[T],
    (rows, inputs, outputs): (usize, usize, usize),
) -> Vec<T> {
    let mut out: Vec<T> = Vec::with_capacity(rows * outputs);
    for _ in 0..rows {
        out.extend_from_slice(b);
    }
    // SAFETY: x is rows x inputs, W^T is W read with swapped strides, out is rows x outputs.
    unsafe {
        gemm(
            (rows, outputs, inputs),
            (out.as_mut_ptr(), outputs, 1),
            true,
            (x.as_ptr(), inputs, 1),
            (w.as_ptr(), 1, inputs),
            T::one(),
            true,
        );
    }
    out
}

impl CustomOp3 for Linear {
    fn name(&self) -> &'static str {
        "fused-linear"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        w: &CpuStorage,
        w_layout: &Layout,
        b: &CpuStorage,
        b_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let name = self.name();
        let (rows, inputs) = rows_cols(x_layout, name)?;
        let (outputs, w_inputs) = rows_cols(w_layout, name)?;
        if w_inputs != inputs || b_layout.shape().elem_count() != outputs {
            candle_core::bail!(
                "{name}: x {:?}, weight {:?} and bias {:?} do not fit",
                x_layout.dims(),
                w_layout.dims(),
                b_layout.dims()
            );
        }
        let dims = (rows, inputs, outputs);
        let out = match (x, w, b) {
            (CpuStorage::F32(x), CpuStorage::F32(w), CpuStorage::F32(b)) => {
                CpuStorage::F32(forward(
                    contiguous(x, x_layout, name)?,
                    contiguous(w, w_layout, name)?,
                    contiguous(b, b_layout, name)?,
                    dims,
                ))
            }
            (CpuStorage::F64(x), CpuStorage::F64(w), CpuStorage::F64(b)) => {
                CpuStorage::F64(forward(
                    contiguous(x, x_layout, name)?,
                    contiguous(w, w_layout, name)?,
                    contiguous(b, b_layout, name)?,
                    dims,
                ))
            }
            _ => candle_core::bail!("{name}: x, weight and bias must all be f32 or all f64"),
        };
        Ok((out, Shape::from((rows, outputs))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let dx = grad.apply_op2_no_bwd(
            &w.contiguous()?,
            &Product {
                transpose_lhs: false,
            },
        )?;
        let dw = grad.apply_op2_no_bwd(
            &x.contiguous()?,
            &Product {
                transpose_lhs: true,
            },
        )?;
        let db = grad
            .apply_op1_no_bwd(&ColumnSums { groups: 1 })?
            .reshape(b.shape())?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

/// `a @ b`, or `a^T @ b` when `transpose_lhs`, of two matrices.
struct Product {
    transpose_lhs: bool,
}

fn product<T: Real>(
    a: &[T],
    (ar, ac): (usize, usize),
    b: &[T],
    bc: usize,
    transpose_lhs: bool,
) -> Vec<T> {
    let (m, k, lhs) = if transpose_lhs {
        (ac, ar, (a.as_ptr(), 1, ac))
    } else {
        (ar, ac, (a.as_ptr(), ac, 1))
    };
    let mut out = vec![T::zero(); m * bc];
    // SAFETY: a is ar x ac (read transposed when asked), b is k x bc, out is m x bc.
    unsafe {
        gemm(
            (m, bc, k),
            (out.as_mut_ptr(), bc, 1),
            false,
            lhs,
            (b.as_ptr(), bc, 1),
            T::one(),
            true,
        );
    }
    out
}

impl CustomOp2 for Product {
    fn name(&self) -> &'static str {
        "fused-linear-product"
    }

    fn cpu_fwd(
        &self,
        a: &CpuStorage,
        a_layout: &Layout,
        b: &CpuStorage,
        b_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let name = self.name();
        let (ar, ac) = rows_cols(a_layout, name)?;
        let (br, bc) = rows_cols(b_layout, name)?;
        let (m, k) = if self.transpose_lhs {
            (ac, ar)
        } else {
            (ar, ac)
        };
        if k != br {
            candle_core::bail!(
                "{name}: {:?} and {:?} do not multiply",
                a_layout.dims(),
                b_layout.dims()
            );
        }
        let t = self.transpose_lhs;
        let out = match (a, b) {
            (CpuStorage::F32(a), CpuStorage::F32(b)) => CpuStorage::F32(product(
                contiguous(a, a_layout, name)?,
                (ar, ac),
                contiguous(b, b_layout, name)?,
                bc,
                t,
            )),
            (CpuStorage::F64(a), CpuStorage::F64(b)) => CpuStorage::F64(product(
                contiguous(a, a_layout, name)?,
                (ar, ac),
                contiguous(b, b_layout, name)?,
                bc,
                t,
            )),
            _ => candle_core::bail!("{name}: both operands must be f32 or both f64"),
        };
        Ok((out, Shape::from((m, bc))))
    }
}
