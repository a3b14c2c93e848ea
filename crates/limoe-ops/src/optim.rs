//! Fused CPU loops for the optimiser step: each updates a tensor in place in one pass, with
//! no temporaries. Other devices use the equivalent candle expressions.

use candle_core::{CpuStorage, CustomOp1, InplaceOp2, InplaceOp3, Layout, Result, Shape, bail};

use crate::storage::{f32_values, f32_values_mut};

/// `dst = beta * dst + (1 - beta) * f(scale * g)`, `f` the identity or the square: Adam's
/// moment averages.
pub struct Ema {
    /// Decay of the average.
    pub beta: f32,
    /// Factor on the gradient (clipping and accumulation).
    pub scale: f32,
    /// Average the squared gradient (second moment) instead of the gradient.
    pub square: bool,
}

impl InplaceOp2 for Ema {
    fn name(&self) -> &'static str {
        "adam-moment"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<()> {
        let dst = f32_values_mut(s1, l1, self.name())?;
        let g = f32_values(s2, l2, self.name())?;
        if dst.len() != g.len() {
            bail!(
                "{}: {} moments for {} gradients",
                self.name(),
                dst.len(),
                g.len()
            );
        }
        let (beta, rest) = (self.beta, 1.0 - self.beta);
        if self.square {
            for (d, &g) in dst.iter_mut().zip(g) {
                let g = g * self.scale;
                *d = *d * beta + g * g * rest;
            }
        } else {
            for (d, &g) in dst.iter_mut().zip(g) {
                *d = *d * beta + g * self.scale * rest;
            }
        }
        Ok(())
    }
}

/// `p -= lr * (m / bc1 / (sqrt(v / bc2) + eps) + wd * p)`: the AdamW parameter update from
/// the already-updated moments.
pub struct AdamUpdate {
    /// Learning rate.
    pub lr: f32,
    /// Decoupled weight decay (0 for excluded parameters).
    pub wd: f32,
    /// Epsilon added to the root of the second moment.
    pub eps: f32,
    /// Bias correction of the first moment, `1 - beta1^t`.
    pub bc1: f32,
    /// Bias correction of the second moment, `1 - beta2^t`.
    pub bc2: f32,
}

impl InplaceOp3 for AdamUpdate {
    fn name(&self) -> &'static str {
        "adamw-update"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<()> {
        let p = f32_values_mut(s1, l1, self.name())?;
        let m = f32_values(s2, l2, self.name())?;
        let v = f32_values(s3, l3, self.name())?;
        if p.len() != m.len() || p.len() != v.len() {
            bail!("{}: parameter and moment sizes differ", self.name());
        }
        for ((p, &m), &v) in p.iter_mut().zip(m).zip(v) {
            let update = (m / self.bc1) / ((v / self.bc2).sqrt() + self.eps);
            *p -= self.lr * (update + self.wd * *p);
        }
        Ok(())
    }
}

/// `dst += a * src`: adding a micro-batch's gradient into the accumulated one.
pub struct Axpy {
    /// Factor on the added tensor.
    pub a: f32,
}

impl InplaceOp2 for Axpy {
    fn name(&self) -> &'static str {
        "axpy"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<()> {
        let dst = f32_values_mut(s1, l1, self.name())?;
        let src = f32_values(s2, l2, self.name())?;
        if dst.len() != src.len() {
            bail!(
                "{}: sizes {} and {} differ",
                self.name(),
                dst.len(),
                src.len()
            );
        }
        for (d, &s) in dst.iter_mut().zip(src) {
            *d += self.a * s;
        }
        Ok(())
    }
}

/// The sum of squares of all elements, accumulated in f64, as an f64 scalar (finite for any
/// finite f32 input).
pub struct SumSquares;

impl CustomOp1 for SumSquares {
    fn name(&self) -> &'static str {
        "sum-squares"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_values(s, l, self.name())?;
        let sum: f64 = x.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
        Ok((CpuStorage::F64(vec![sum]), Shape::from(())))
    }
}
