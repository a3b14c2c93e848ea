//! Row gathers and scatters with their backward passes as single nodes: the combine step of a
//! sparse layer (each output row a weighted sum of K gathered rows) and the scatter of routed
//! rows back into a residual stream. As candle ops each is three or four nodes, and every
//! node of candle's backward allocates a zeroed gradient and adds into it.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};

use crate::real::Real;
use crate::rows::{OutRow, Rows, collect_rows, row_len, row_of, write_row};
use crate::storage::same_float;

/// `y[t] = sum_k weights[k, t] * rows[index[k * T + t]]`: the output [T, n] from `rows`
/// [R, n] and `weights` [K, T].
pub(crate) struct GatherWeightedSum {
    /// K * T row indices into `rows`, choice-major.
    pub index: Arc<Vec<u32>>,
}

/// Output rows of [`GatherWeightedSum`].
struct WeightedRows<'a, T> {
    rows: &'a [T],
    weights: &'a [T],
    index: &'a [u32],
    tokens: usize,
    n: usize,
}

impl<T: Real> Rows<T> for WeightedRows<'_, T> {
    #[inline(always)]
    fn row<'o>(&self, t: usize, out: OutRow<'o, T>) -> &'o mut [T] {
        let mut choices = (self.index.iter().skip(t).step_by(self.tokens))
            .zip(self.weights.iter().skip(t).step_by(self.tokens));
        let row = |index: u32| row_of(self.rows, self.n, index as usize);
        let out = match choices.next() {
            Some((&first, &weight)) => write_row(out, row(first).iter().map(|&v| weight * v)),
            None => write_row(out, std::iter::repeat_n(T::zero(), self.n)),
        };
        for (&index, &weight) in choices {
            for (o, &v) in out.iter_mut().zip(row(index)) {
                *o += weight * v;
            }
        }
        out
    }
}

impl GatherWeightedSum {
    /// Checks that the index fits `weights` [K, T] and `rows` [R, n]; returns T.
    fn tokens(&self, rows: &Layout, weights: &Layout) -> Result<usize> {
        let (count, tokens) = match weights.dims() {
            &[k, t] => (k * t, t),
            dims => candle_core::bail!("gather-weighted-sum: weights {dims:?} must be [K, T]"),
        };
        let available = rows.dims().first().copied().unwrap_or(0);
        if self.index.len() != count || self.index.iter().any(|&r| r as usize >= available) {
            candle_core::bail!(
                "gather-weighted-sum: {} indices into {available} rows for weights {:?}",
                self.index.len(),
                weights.dims()
            );
        }
        Ok(tokens)
    }
}

impl CustomOp2 for GatherWeightedSum {
    fn name(&self) -> &'static str {
        "gather-weighted-sum"
    }

    fn cpu_fwd(
        &self,
        rows: &CpuStorage,
        rows_layout: &Layout,
        weights: &CpuStorage,
        weights_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let tokens = self.tokens(rows_layout, weights_layout)?;
        let n = row_len(rows_layout);
        let out = same_float!(self.name(), [(r, rows, rows_layout), (w, weights, weights_layout)]
            => collect_rows(tokens * n, n, &WeightedRows { rows: r, weights: w, index: &self.index, tokens, n }));
        Ok((out, Shape::from((tokens, n))))
    }

    fn bwd(
        &self,
        rows: &Tensor,
        weights: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let rows_grad = grad.apply_op2_no_bwd(
            weights,
            &ScatterWeighted {
                index: Arc::clone(&self.index),
                rows: rows.dim(0)?,
            },
        )?;
        let weights_grad = grad.apply_op2_no_bwd(
            rows,
            &GatheredDots {
                index: Arc::clone(&self.index),
            },
        )?;
        Ok((
            Some(rows_grad),
            Some(weights_grad.reshape(weights.shape())?),
        ))
    }
}

/// The backward of [`GatherWeightedSum`] to its rows: `d rows[index[k * T + t]] += weights[k,
/// t] * grad[t]`, over `rows` rows. Serial: indices may repeat (dropped choices share a row).
struct ScatterWeighted {
    index: Arc<Vec<u32>>,
    rows: usize,
}

/// The rows' gradient of [`ScatterWeighted`]: `grad` [T, n], `weights` and `index` K * T.
fn scatter_weighted<T: Real>(
    grad: &[T],
    weights: &[T],
    index: &[u32],
    rows: usize,
    n: usize,
) -> Vec<T> {
    let tokens = grad.len() / n.max(1);
    let mut out = vec![T::zero(); rows * n];
    for (i, (&row, &weight)) in index.iter().zip(weights).enumerate() {
        let g = row_of(grad, n, i % tokens.max(1));
        let start = row as usize * n;
        for (o, &v) in out[start..start + n].iter_mut().zip(g) {
            *o += weight * v;
        }
    }
    out
}

impl CustomOp2 for ScatterWeighted {
    fn name(&self) -> &'static str {
        "scatter-weighted"
    }

    fn cpu_fwd(
        &self,
        grad: &CpuStorage,
        grad_layout: &Layout,
        weights: &CpuStorage,
        weights_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let n = row_len(grad_layout);
        let out = same_float!(self.name(), [(g, grad, grad_layout), (w, weights, weights_layout)]
            => scatter_weighted(g, w, &self.index, self.rows, n));
        Ok((out, Shape::from((self.rows, n))))
    }
}

/// The backward of [`GatherWeightedSum`] to its weights: `d weights[k, t] = grad[t] .
/// rows[index[k * T + t]]`, as [K * T].
struct GatheredDots {
    index: Arc<Vec<u32>>,
}

impl CustomOp2 for GatheredDots {
    fn name(&self) -> &'static str {
        "gathered-dots"
    }

    fn cpu_fwd(
        &self,
        grad: &CpuStorage,
        grad_layout: &Layout,
        rows: &CpuStorage,
        rows_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let n = row_len(grad_layout);
        let tokens = grad_layout.dims().first().copied().unwrap_or(0).max(1);
        let out = same_float!(self.name(), [(g, grad, grad_layout), (r, rows, rows_layout)]
            => collect_rows(self.index.len(), 1, &Dots { grad: g, rows: r, index: &self.index, tokens, n }));
        Ok((out, Shape::from(self.index.len())))
    }
}

/// One dot product per (choice, token) of [`GatheredDots`].
struct Dots<'a, T> {
    grad: &'a [T],
    rows: &'a [T],
    index: &'a [u32],
    tokens: usize,
    n: usize,
}

impl<T: Real> Rows<T> for Dots<'_, T> {
    #[inline(always)]
    fn row<'o>(&self, i: usize, out: OutRow<'o, T>) -> &'o mut [T] {
        let g = row_of(self.grad, self.n, i % self.tokens);
        let r = row_of(self.rows, self.n, self.index[i] as usize);
        let dot = g.iter().zip(r).fold(T::zero(), |acc, (&a, &b)| acc + a * b);
        write_row(out, std::iter::once(dot))
    }
}

/// `base` with `rows[i]` added to its row `index[i]`: the output [N, n] from `base` [N, n]
/// and `rows` [M, n].
pub(crate) struct ScatterAddRows {
    /// [M] u32 row indices into `base`, on the CPU.
    pub index: Tensor,
}

fn scatter_add_rows<T: Real>(base: &[T], rows: &[T], index: &[u32], n: usize) -> Vec<T> {
    let mut out = base.to_vec();
    for (i, &row) in index.iter().enumerate() {
        let start = row as usize * n;
        for (o, &v) in out[start..start + n].iter_mut().zip(row_of(rows, n, i)) {
            *o += v;
        }
    }
    out
}

impl CustomOp2 for ScatterAddRows {
    fn name(&self) -> &'static str {
        "scatter-add-rows"
    }

    fn cpu_fwd(
        &self,
        base: &CpuStorage,
        base_layout: &Layout,
        rows: &CpuStorage,
        rows_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let index = self.index.to_vec1::<u32>()?;
        let n = row_len(base_layout);
        let available = base_layout.dims().first().copied().unwrap_or(0);
        let given = rows_layout.dims().first().copied().unwrap_or(0);
        if row_len(rows_layout) != n
            || index.len() != given
            || index.iter().any(|&r| r as usize >= available)
        {
            candle_core::bail!(
                "{}: {} indices into {:?} for rows {:?}",
                self.name(),
                index.len(),
                base_layout.dims(),
                rows_layout.dims()
            );
        }
        let out = same_float!(self.name(), [(b, base, base_layout), (r, rows, rows_layout)]
            => scatter_add_rows(b, r, &index, n));
        Ok((out, base_layout.shape().clone()))
    }

    fn bwd(
        &self,
        _base: &Tensor,
        _rows: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(grad.clone()), Some(grad.index_select(&self.index, 0)?)))
    }
}
