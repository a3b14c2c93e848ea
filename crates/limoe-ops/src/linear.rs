//! The linear layer `x W^T + b` (optionally followed by GELU) as one CPU op: one matmul
//! writing onto the broadcast bias, and a backward that computes dx, dW and db directly.
//!
//! Built from candle primitives it is three nodes (the weight's transpose, the matmul, the
//! bias add), and candle's backward starts each node's gradient as zeros and adds into it:
//! for a layer's output that is a zeroed buffer and an add of the output's size, and a strided
//! add for the transposed weight, and a GELU after it is one more node of the hidden
//! layer's size. Here it is one node, which keeps the pre-activation for the backward.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::fused::{ColumnSums, Gelu, bias_rows, gelu_backward};
use crate::matmul::{Shared, gemm, written};
use crate::real::Real;
use crate::rows::map_rows;
use crate::saved::Saved;
use crate::storage::same_float;

/// What follows the affine map of a linear op.
pub(crate) enum Activation {
    /// Nothing.
    Identity,
    /// GELU (tanh approximation); the pre-activation is kept for the backward.
    Gelu(Saved),
}

/// `x W^T + b` for `x` [R, in], `W` [out, in], `b` [out], then the activation.
pub(crate) struct Linear {
    /// What follows the affine map.
    pub activation: Activation,
}

impl Activation {
    /// Applies the activation to `pre` (rows of `n`), keeping `pre` when asked.
    fn apply<T: Real>(&self, pre: Vec<T>, shape: &[usize]) -> Result<Vec<T>> {
        match self {
            Activation::Identity => Ok(pre),
            Activation::Gelu(saved) => {
                let n = shape.last().copied().unwrap_or(1);
                let out = map_rows(&Gelu, &pre, n);
                saved.keep(pre, shape)?;
                Ok(out)
            }
        }
    }

    /// The gradient at the affine map's output, from the gradient at the activation's.
    fn backward(&self, grad: &Tensor, op: &str) -> Result<Tensor> {
        match self {
            Activation::Identity => grad.contiguous(),
            Activation::Gelu(saved) => gelu_backward(&saved.get(op)?, grad),
        }
    }
}

fn rows_cols(layout: &Layout, op: &str) -> Result<(usize, usize)> {
    match layout.dims() {
        &[r, c] => Ok((r, c)),
        dims => candle_core::bail!("{op}: expected a matrix, got {dims:?}"),
    }
}

/// `x W^T + b` for `x` [rows, inputs], `w` [outputs, inputs], `b` [outputs], plus
/// `residual` [rows, outputs] when given.
pub(crate) fn forward<T: Real>(
    x: &[T],
    w: &[T],
    b: &[T],
    (rows, inputs, outputs): (usize, usize, usize),
    residual: Option<&[T]>,
) -> Vec<T> {
    let mut out = bias_rows(residual, b, rows, outputs);
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
        let out = same_float!(name, [(x, x, x_layout), (w, w, w_layout), (b, b, b_layout)]
            => self.activation.apply(forward(x, w, b, dims, None), &[rows, outputs])?);
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
        let grad = self.activation.backward(grad, self.name())?;
        affine_backward((x, w, b), &grad, WeightLayout::OutIn, None).map(all_present)
    }
}

/// How a linear op stores its weight.
#[derive(Clone, Copy)]
enum WeightLayout {
    /// [out, in], applied as `x W^T` ([`Linear`]).
    OutIn,
    /// [groups, in, out], applied as `x_g W_g` ([`GroupedLinear`]).
    GroupsInOut,
}

/// dx, dW and db of `y = x W (+ b)` per group from the gradient at `y` (after the activation's
/// backward); `filled` as in [`GroupedLinear`].
fn affine_backward(
    (x, w, b): (&Tensor, &Tensor, &Tensor),
    grad: &Tensor,
    layout: WeightLayout,
    filled: Option<&[usize]>,
) -> Result<[Tensor; 3]> {
    let (groups, out_in) = match layout {
        WeightLayout::OutIn => (1, true),
        WeightLayout::GroupsInOut => (w.dim(0)?, false),
    };
    let product = |transpose_lhs, transpose_rhs| Product {
        groups,
        transpose_lhs,
        transpose_rhs,
        filled: filled.map(<[usize]>::to_vec),
    };
    // dx = grad W (W^T when stored [in, out]).
    let dx = grad.apply_op2_no_bwd(&w.contiguous()?, &product(false, !out_in))?;
    // dW = grad^T x for [out, in], x^T grad for [in, out].
    let dw = if out_in {
        grad.apply_op2_no_bwd(&x.contiguous()?, &product(true, false))?
    } else {
        x.contiguous()?
            .apply_op2_no_bwd(grad, &product(true, false))?
    };
    let db = grad.apply_op1_no_bwd(&ColumnSums { groups })?;
    Ok([dx, dw.reshape(w.shape())?, db.reshape(b.shape())?])
}

/// A backward pass's three gradients, every one present.
fn all_present([a, b, c]: [Tensor; 3]) -> (Option<Tensor>, Option<Tensor>, Option<Tensor>) {
    (Some(a), Some(b), Some(c))
}

/// Per group g of `groups`: `op(a_g) @ op(b_g)`, where `a` and `b` hold `groups` row-major
/// blocks each (any shape whose last dimension is the blocks' columns) and `op` transposes
/// when asked. The result is [groups * m, n].
pub(crate) struct Product {
    /// Number of blocks.
    pub groups: usize,
    /// Use each block of `a` transposed.
    pub transpose_lhs: bool,
    /// Use each block of `b` transposed.
    pub transpose_rhs: bool,
    /// Rows of each block of `a` that hold data (all when `None`): the other rows count as
    /// zeros and, without `transpose_lhs`, give zero rows of the result.
    pub filled: Option<Vec<usize>>,
}

/// `(rows, columns)` of each of `groups` blocks.
fn blocks(layout: &Layout, groups: usize, op: &str) -> Result<(usize, usize)> {
    let cols = layout.dims().last().copied().unwrap_or(1).max(1);
    let count = layout.shape().elem_count();
    if groups == 0 || !count.is_multiple_of(groups * cols) {
        candle_core::bail!(
            "{op}: {:?} does not split into {groups} blocks",
            layout.dims()
        );
    }
    Ok((count / (groups * cols), cols))
}

impl Product {
    fn run<T: Real>(
        &self,
        a: &[T],
        (ar, ac): (usize, usize),
        b: &[T],
        (br, bc): (usize, usize),
    ) -> Vec<T> {
        let (m, k) = if self.transpose_lhs {
            (ac, ar)
        } else {
            (ar, ac)
        };
        let n = if self.transpose_rhs { br } else { bc };
        let write = |out: *mut T| {
            let out = Shared(out);
            let block = |g: usize| {
                let (a, b) = (&a[g * ar * ac..], &b[g * br * bc..]);
                let data_rows = self.filled.as_ref().map_or(ar, |f| f[g].min(ar));
                let lhs = if self.transpose_lhs {
                    (a.as_ptr(), 1, ac)
                } else {
                    (a.as_ptr(), ac, 1)
                };
                let rhs = if self.transpose_rhs {
                    (b.as_ptr(), 1, bc)
                } else {
                    (b.as_ptr(), bc, 1)
                };
                // The rows of a past `data_rows` are zeros: a shorter sum, or zero rows.
                let (rows, depth) = if self.transpose_lhs {
                    (m, data_rows)
                } else {
                    (data_rows, k)
                };
                // SAFETY: block g of a is ar x ac and of b br x bc (read transposed when
                // asked, sizes checked by the caller), block g of out is m x n and written by
                // this task only; the rows past `rows` are zeroed (all-zero bits are 0.0).
                unsafe {
                    let block = out.at(g * m * n);
                    gemm(
                        (rows, n, depth),
                        (block, n, 1),
                        false,
                        lhs,
                        rhs,
                        T::one(),
                        self.groups == 1,
                    );
                    std::ptr::write_bytes(block.add(rows * n), 0, (m - rows) * n);
                }
            };
            for_groups(self.groups, block);
        };
        // SAFETY: the blocks cover the output, each written by gemm without accumulation.
        unsafe { written(self.groups * m * n, write) }
    }
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
        let (ad, bd) = (
            blocks(a_layout, self.groups, name)?,
            blocks(b_layout, self.groups, name)?,
        );
        let (m, k) = if self.transpose_lhs { (ad.1, ad.0) } else { ad };
        let (kb, n) = if self.transpose_rhs { (bd.1, bd.0) } else { bd };
        if k != kb {
            candle_core::bail!(
                "{name}: {:?} and {:?} do not multiply",
                a_layout.dims(),
                b_layout.dims()
            );
        }
        let out = same_float!(name, [(a, a, a_layout), (b, b, b_layout)] => self.run(a, ad, b, bd));
        Ok((out, Shape::from((self.groups * m, n))))
    }
}

/// One linear layer per group: `x` [G * S, in] is G blocks of S rows, block g goes through
/// `w` [G, in, out] and `b` [G, out] of group g, then the activation; the result is
/// [G * S, out].
pub(crate) struct GroupedLinear {
    /// What follows the affine map.
    pub activation: Activation,
    /// Rows of each block that hold data (all when `None`; a block is filled from its first
    /// row): the other rows are not computed (they hold the activated bias)
    /// and must get a zero gradient (nothing reads them).
    pub filled: Option<Vec<usize>>,
}

pub(crate) fn grouped_forward<T: Real>(
    x: &[T],
    w: &[T],
    b: &[T],
    (groups, inputs, outputs): (usize, usize, usize),
    filled: Option<&[usize]>,
) -> Vec<T> {
    let rows = x.len() / (groups * inputs).max(1);
    let mut out = bias_rows(None, b, groups * rows, outputs);
    let dst = Shared(out.as_mut_ptr());
    for_groups(groups, |g| {
        let data_rows = filled.map_or(rows, |f| f[g].min(rows));
        // SAFETY: block g of x is rows x inputs, w_g is inputs x outputs, block g of out is
        // rows x outputs and written by this task only; the first `data_rows` rows are
        // computed.
        unsafe {
            gemm(
                (data_rows, outputs, inputs),
                (dst.at(g * rows * outputs), outputs, 1),
                true,
                (x[g * rows * inputs..].as_ptr(), inputs, 1),
                (w[g * inputs * outputs..].as_ptr(), outputs, 1),
                T::one(),
                groups == 1,
            );
        }
    });
    out
}

/// Runs `block(g)` for every group: one task per group (each gemm on one thread: the
/// groups are the parallelism; each group's matrices are small) or, for one group, in place.
fn for_groups(groups: usize, block: impl Fn(usize) + Sync + Send) {
    if groups > 1 {
        (0..groups).into_par_iter().for_each(block);
    } else {
        (0..groups).for_each(block);
    }
}

impl CustomOp3 for GroupedLinear {
    fn name(&self) -> &'static str {
        "fused-grouped-linear"
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
        let &[groups, inputs, outputs] = w_layout.dims() else {
            candle_core::bail!(
                "{name}: the weight must be [groups, in, out], got {:?}",
                w_layout.dims()
            );
        };
        let (rows, x_inputs) = rows_cols(x_layout, name)?;
        if x_inputs != inputs
            || !rows.is_multiple_of(groups.max(1))
            || b_layout.dims() != [groups, outputs]
            || self.filled.as_ref().is_some_and(|f| f.len() != groups)
        {
            candle_core::bail!(
                "{name}: x {:?}, weight {:?} and bias {:?} do not fit",
                x_layout.dims(),
                w_layout.dims(),
                b_layout.dims()
            );
        }
        let dims = (groups, inputs, outputs);
        let out = same_float!(name, [(x, x, x_layout), (w, w, w_layout), (b, b, b_layout)]
        => {
            let out = grouped_forward(x, w, b, dims, self.filled.as_deref());
            self.activation.apply(out, &[rows, outputs])?
        });
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
        let grad = self.activation.backward(grad, self.name())?;
        grouped_backward((x, w, b), &grad, self.filled.as_deref()).map(all_present)
    }
}

/// dx, dW and db of one linear layer per group (`w` [G, in, out], `b` [G, out]) from the
/// gradient at its output; `filled` as in [`GroupedLinear`].
pub(crate) fn grouped_backward(
    (x, w, b): (&Tensor, &Tensor, &Tensor),
    grad: &Tensor,
    filled: Option<&[usize]>,
) -> Result<[Tensor; 3]> {
    affine_backward((x, w, b), grad, WeightLayout::GroupsInOut, filled)
}
