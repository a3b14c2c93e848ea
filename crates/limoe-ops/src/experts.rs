//! A sparse layer's expert MLPs on rows gathered from its tokens, as two CPU ops: the
//! gather, and `fc2(gelu(fc1(x)))` of every expert as one node.
//!
//! Built from a gather and two grouped linear ops, the hidden activation [E * slots, hidden]
//! is a node of candle's backward, and candle starts its gradient as a zeroed buffer and adds
//! into it: the largest of the zero-and-add passes a MoE block makes beyond its dense twin's
//! fused MLP (`limoe bench model`, t128). Here the hidden activation stays inside one op.
//! candle ops take at most three inputs, so the gather appends the (small) biases to the rows
//! it gathers, and the MLP op reads them there: its first input is `[rows, b1, b2]`, flat.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};

use crate::fused::{Gelu, gelu_backward};
use crate::linear::{grouped_backward, grouped_forward};
use crate::real::Real;
use crate::rows::{map_rows, row_of};
use crate::saved::Saved;
use crate::storage::same_float;

/// The rows of `tokens` [T, W] listed by `index`, then `biases`, flat: the packed input of
/// [`ExpertMlp`].
pub(crate) struct GatherPacked {
    /// Row indices into the tokens (u32, on the CPU), `slots` per expert.
    pub index: Tensor,
}

fn gather_packed<T: Real>(tokens: &[T], biases: &[T], index: &[u32], width: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(index.len() * width + biases.len());
    for &row in index {
        out.extend_from_slice(row_of(tokens, width, row as usize));
    }
    out.extend_from_slice(biases);
    out
}

impl CustomOp2 for GatherPacked {
    fn name(&self) -> &'static str {
        "expert-gather"
    }

    fn cpu_fwd(
        &self,
        tokens: &CpuStorage,
        tokens_layout: &Layout,
        biases: &CpuStorage,
        biases_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let name = self.name();
        let &[count, width] = tokens_layout.dims() else {
            candle_core::bail!(
                "{name}: tokens must be [T, W], got {:?}",
                tokens_layout.dims()
            );
        };
        let index = self.index.to_vec1::<u32>()?;
        if let Some(&row) = index.iter().find(|&&r| r as usize >= count) {
            candle_core::bail!("{name}: row {row} of {count} tokens");
        }
        let len = index.len() * width + biases_layout.shape().elem_count();
        let out = same_float!(name, [(t, tokens, tokens_layout), (b, biases, biases_layout)]
            => gather_packed(t, b, &index, width));
        Ok((out, Shape::from(len)))
    }

    fn bwd(
        &self,
        tokens: &Tensor,
        biases: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (rows, width) = (self.index.elem_count(), tokens.dim(1)?);
        let grad = grad.contiguous()?;
        let row_grads = grad.narrow(0, 0, rows * width)?.reshape((rows, width))?;
        // As candle's index_select backward: the gathered rows' gradients summed per token.
        let d_tokens = tokens.zeros_like()?.index_add(&self.index, &row_grads, 0)?;
        let d_biases = grad
            .narrow(0, rows * width, biases.elem_count())?
            .reshape(biases.shape())?;
        Ok((Some(d_tokens), Some(d_biases)))
    }
}

/// `fc2(gelu(fc1(x)))` with expert e's layers on block e of the rows; inputs (the packed rows
/// and biases of [`GatherPacked`], `w1` [E, W, H], `w2` [E, H, W]).
pub(crate) struct ExpertMlp {
    /// Rows of each block that hold data, as in [`crate::grouped_linear`].
    pub filled: Option<Vec<usize>>,
    /// fc1's output before GELU, and GELU's output.
    pub kept: [Saved; 2],
}

/// The sizes of an [`ExpertMlp`]: rows (all blocks), width, hidden width, experts.
#[derive(Clone, Copy)]
struct Sizes {
    rows: usize,
    width: usize,
    hidden: usize,
    experts: usize,
}

impl Sizes {
    fn of(packed: &[usize], w1: &[usize], w2: &[usize], op: &str) -> Result<Sizes> {
        let (&[experts, width, hidden], &[e2, h2, w2_width]) = (w1, w2) else {
            candle_core::bail!("{op}: w1 {w1:?} and w2 {w2:?} must be [E, W, H] and [E, H, W]");
        };
        let biases = experts * (hidden + width);
        let total = packed.iter().product::<usize>();
        let sizes = Sizes {
            rows: total.saturating_sub(biases) / width.max(1),
            width,
            hidden,
            experts,
        };
        if (e2, h2, w2_width) != (experts, hidden, width)
            || sizes.lengths().iter().sum::<usize>() != total
            || !sizes.rows.is_multiple_of(experts.max(1))
        {
            candle_core::bail!("{op}: {total} packed values, w1 {w1:?} and w2 {w2:?} do not fit");
        }
        Ok(sizes)
    }

    /// The lengths of the packed input's parts: rows [R, W], b1 [E, H] and b2 [E, W].
    fn lengths(&self) -> [usize; 3] {
        let (e, w) = (self.experts, self.width);
        [self.rows * w, e * self.hidden, e * w]
    }

    /// The packed input cut into rows, b1 and b2 ([`Sizes::lengths`]).
    fn split(&self, packed: &Tensor) -> Result<[Tensor; 3]> {
        let [x_len, b1_len, b2_len] = self.lengths();
        Ok([
            packed
                .narrow(0, 0, x_len)?
                .reshape((self.rows, self.width))?,
            (packed.narrow(0, x_len, b1_len)?).reshape((self.experts, self.hidden))?,
            (packed.narrow(0, x_len + b1_len, b2_len)?).reshape((self.experts, self.width))?,
        ])
    }
}

impl ExpertMlp {
    fn forward<T: Real>(&self, packed: &[T], w1: &[T], w2: &[T], sizes: Sizes) -> Result<Vec<T>> {
        let Sizes {
            rows,
            width,
            hidden,
            experts,
        } = sizes;
        let [x_len, b1_len, _] = sizes.lengths();
        let (x, biases) = packed.split_at(x_len);
        let (b1, b2) = biases.split_at(b1_len);
        let filled = self.filled.as_deref();
        let pre = grouped_forward(x, w1, b1, (experts, width, hidden), filled);
        let activated = map_rows(&Gelu, &pre, hidden);
        let out = grouped_forward(&activated, w2, b2, (experts, hidden, width), filled);
        self.kept[0].keep(pre, &[rows, hidden])?;
        self.kept[1].keep(activated, &[rows, hidden])?;
        Ok(out)
    }
}

impl CustomOp3 for ExpertMlp {
    fn name(&self) -> &'static str {
        "expert-mlp"
    }

    fn cpu_fwd(
        &self,
        packed: &CpuStorage,
        packed_layout: &Layout,
        w1: &CpuStorage,
        w1_layout: &Layout,
        w2: &CpuStorage,
        w2_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let name = self.name();
        let sizes = Sizes::of(
            packed_layout.dims(),
            w1_layout.dims(),
            w2_layout.dims(),
            name,
        )?;
        if self
            .filled
            .as_ref()
            .is_some_and(|f| f.len() != sizes.experts)
        {
            candle_core::bail!(
                "{name}: filled slots for other than {} experts",
                sizes.experts
            );
        }
        let out = same_float!(
            name,
            [(p, packed, packed_layout), (a, w1, w1_layout), (b, w2, w2_layout)]
            => self.forward(p, a, b, sizes)?
        );
        Ok((out, Shape::from((sizes.rows, sizes.width))))
    }

    fn bwd(
        &self,
        packed: &Tensor,
        w1: &Tensor,
        w2: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let name = self.name();
        let sizes = Sizes::of(packed.dims(), w1.dims(), w2.dims(), name)?;
        let [x, b1, b2] = sizes.split(packed)?;
        let (pre, activated) = (self.kept[0].get(name)?, self.kept[1].get(name)?);
        let filled = self.filled.as_deref();
        let [d_activated, d_w2, d_b2] =
            grouped_backward((&activated, w2, &b2), &grad.contiguous()?, filled)?;
        let d_pre = gelu_backward(&pre, &d_activated)?;
        let [d_x, d_w1, d_b1] = grouped_backward((&x, w1, &b1), &d_pre, filled)?;
        let flat = [d_x, d_b1, d_b2].map(|t| t.flatten_all());
        let d_packed = Tensor::cat(&flat.into_iter().collect::<Result<Vec<_>>>()?, 0)?;
        Ok((Some(d_packed), Some(d_w1), Some(d_w2)))
    }
}
