//! Closed-form ridge regression probe on frozen embeddings, as in big_vision/vmoe's few-shot
//! evaluator.
//!
//! Features are standardised with the training rows' per-dimension mean and standard
//! deviation (plus [`STD_EPS`]), then a constant feature [`BIAS_FEATURE`] is appended for the
//! bias (large, so the bias is almost unregularised). Targets are one-hot scaled to `+1` for
//! the true class and `-1` otherwise. The weights solve `(X^T X + l2 I) W = X^T Y` by Cholesky
//! when there are at least as many rows as features, else the equivalent dual form
//! `W = X^T (X X^T + l2 I)^-1 Y`.

use anyhow::{Result, bail};

use super::cholesky::cholesky_solve;
use super::matrix::{Matrix, dot};
use super::{check_labels, pessimistic_rank};

/// The constant feature appended for the bias (big_vision's `BIAS_CONSTANT`).
pub const BIAS_FEATURE: f64 = 100.0;

/// Added to each dimension's standard deviation before dividing by it.
pub const STD_EPS: f64 = 1e-5;

/// A fitted ridge probe: standardisation and a linear map to one score per class.
#[derive(Clone, Debug)]
pub struct RidgeProbe {
    mean: Vec<f64>,
    inv_std: Vec<f64>,
    /// `[dim + 1, classes]`, the last row multiplying the bias feature.
    weights: Vec<f64>,
    classes: usize,
}

impl RidgeProbe {
    /// Fits a probe to `x` `[n, dim]` with class `labels` and L2 strength `l2` (> 0). Errors on
    /// zero rows, mismatched counts, a label outside `0..num_classes`, or a non-positive `l2`.
    pub fn fit(x: Matrix, labels: &[usize], num_classes: usize, l2: f64) -> Result<RidgeProbe> {
        Ridge::new(x, labels, num_classes)?.solve(l2)
    }

    /// Scores `[rows, classes]` of `x` (same dimension as the training rows).
    pub fn scores(&self, x: Matrix) -> Result<Vec<f64>> {
        let dim = self.mean.len();
        if x.cols() != dim {
            bail!(
                "the probe was fitted on dimension {dim} but got dimension {}",
                x.cols()
            );
        }
        let mut out = vec![0.0f64; x.rows() * self.classes];
        let mut feats = Vec::with_capacity(dim + 1);
        for (row, scores) in x.iter_rows().zip(out.chunks_exact_mut(self.classes)) {
            feats.clear();
            feats.extend(standardised(row, &self.mean, &self.inv_std));
            for (f, w) in feats.iter().zip(self.weights.chunks_exact(self.classes)) {
                scores.iter_mut().zip(w).for_each(|(s, w)| *s += f * w);
            }
        }
        Ok(out)
    }

    /// Fraction of rows whose true class scores strictly highest. Errors on zero rows,
    /// mismatched counts or a label outside the class range.
    pub fn accuracy(&self, x: Matrix, labels: &[usize]) -> Result<f64> {
        let scores = self.checked_scores(x, labels)?;
        let right = scores
            .chunks_exact(self.classes)
            .zip(labels)
            .filter(|&(row, &label)| pessimistic_rank(row, label) == 1)
            .count();
        Ok(right as f64 / labels.len() as f64)
    }

    /// Mean squared error of the scores against the `+-1` targets (the l2 tie-breaker).
    pub(crate) fn mse(&self, x: Matrix, labels: &[usize]) -> Result<f64> {
        let scores = self.checked_scores(x, labels)?;
        let sum: f64 = scores
            .chunks_exact(self.classes)
            .zip(labels)
            .flat_map(|(row, &label)| {
                row.iter()
                    .enumerate()
                    .map(move |(c, s)| (s - target(c, label)).powi(2))
            })
            .sum();
        Ok(sum / scores.len() as f64)
    }

    fn checked_scores(&self, x: Matrix, labels: &[usize]) -> Result<Vec<f64>> {
        check_rows(x, labels, self.classes)?;
        self.scores(x)
    }
}

/// A ridge problem with its Gram matrix precomputed, solvable for many L2 strengths.
pub(crate) struct Ridge {
    mean: Vec<f64>,
    inv_std: Vec<f64>,
    /// Standardised rows with the bias feature, `[n, dim + 1]`.
    features: Vec<f64>,
    classes: usize,
    /// `X X^T` `[n, n]` when `dual`, else `X^T X` `[dim + 1, dim + 1]`.
    gram: Vec<f64>,
    /// `Y` `[n, classes]` when `dual`, else `X^T Y` `[dim + 1, classes]`.
    rhs: Vec<f64>,
    dual: bool,
}

impl Ridge {
    /// Standardises `x`, builds the targets and the Gram matrix of the cheaper form.
    pub(crate) fn new(x: Matrix, labels: &[usize], num_classes: usize) -> Result<Ridge> {
        check_rows(x, labels, num_classes)?;
        let (n, dim) = (x.rows(), x.cols());
        let mut mean = vec![0.0f64; dim];
        for row in x.iter_rows() {
            mean.iter_mut()
                .zip(row)
                .for_each(|(m, &v)| *m += f64::from(v));
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        let mut var = vec![0.0f64; dim];
        for row in x.iter_rows() {
            var.iter_mut()
                .zip(row.iter().zip(&mean))
                .for_each(|(s, (&v, m))| *s += (f64::from(v) - m).powi(2));
        }
        let inv_std: Vec<f64> = var
            .iter()
            .map(|s| 1.0 / ((s / n as f64).sqrt() + STD_EPS))
            .collect();
        let features: Vec<f64> = x
            .iter_rows()
            .flat_map(|row| standardised(row, &mean, &inv_std))
            .collect();
        let targets: Vec<f64> = labels
            .iter()
            .flat_map(|&label| (0..num_classes).map(move |c| target(c, label)))
            .collect();
        let p = dim + 1;
        let dual = n < p;
        let (gram, rhs) = if dual {
            (gram_rows(&features, n, p), targets)
        } else {
            (
                gram_cols(&features, n, p),
                transpose_times(&features, p, &targets, num_classes),
            )
        };
        Ok(Ridge {
            mean,
            inv_std,
            features,
            classes: num_classes,
            gram,
            rhs,
            dual,
        })
    }

    /// The probe for L2 strength `l2` (finite, > 0).
    pub(crate) fn solve(&self, l2: f64) -> Result<RidgeProbe> {
        if !(l2 > 0.0 && l2.is_finite()) {
            bail!("ridge L2 strength must be positive and finite, got {l2}");
        }
        let size = self.rhs.len() / self.classes;
        let mut a = self.gram.clone();
        (0..size).for_each(|i| a[i * size + i] += l2);
        let solved = cholesky_solve(&a, size, &self.rhs)
            .map_err(|e| anyhow::anyhow!("ridge solve with l2 = {l2}: {e}"))?;
        let p = self.mean.len() + 1;
        let weights = if self.dual {
            transpose_times(&self.features, p, &solved, self.classes)
        } else {
            solved
        };
        Ok(RidgeProbe {
            mean: self.mean.clone(),
            inv_std: self.inv_std.clone(),
            weights,
            classes: self.classes,
        })
    }
}

/// `+1` for the true class, `-1` otherwise.
fn target(class: usize, label: usize) -> f64 {
    if class == label { 1.0 } else { -1.0 }
}

/// A row standardised, with the bias feature appended.
fn standardised<'a>(
    row: &'a [f32],
    mean: &'a [f64],
    inv_std: &'a [f64],
) -> impl Iterator<Item = f64> + 'a {
    row.iter()
        .zip(mean.iter().zip(inv_std))
        .map(|(&v, (m, s))| (f64::from(v) - m) * s)
        .chain(std::iter::once(BIAS_FEATURE))
}

/// Checks a labelled set: non-empty, one label per row, labels in range.
fn check_rows(x: Matrix, labels: &[usize], num_classes: usize) -> Result<()> {
    if num_classes == 0 {
        bail!("a probe needs at least one class");
    }
    if x.rows() == 0 {
        bail!("a probe needs at least one example");
    }
    if labels.len() != x.rows() {
        bail!("{} examples but {} labels", x.rows(), labels.len());
    }
    check_labels(labels, num_classes)
}

/// `X X^T` of `x` `[n, p]`.
fn gram_rows(x: &[f64], n: usize, p: usize) -> Vec<f64> {
    let mut g = vec![0.0f64; n * n];
    for i in 0..n {
        for j in 0..=i {
            let v = dot(&x[i * p..(i + 1) * p], &x[j * p..(j + 1) * p]);
            g[i * n + j] = v;
            g[j * n + i] = v;
        }
    }
    g
}

/// `X^T X` of `x` `[n, p]`.
fn gram_cols(x: &[f64], n: usize, p: usize) -> Vec<f64> {
    let mut g = vec![0.0f64; p * p];
    for row in x.chunks_exact(p).take(n) {
        for i in 0..p {
            let ri = row[i];
            g[i * p..i * p + i + 1]
                .iter_mut()
                .zip(row)
                .for_each(|(gij, rj)| *gij += ri * rj);
        }
    }
    for i in 0..p {
        for j in 0..i {
            g[j * p + i] = g[i * p + j];
        }
    }
    g
}

/// `X^T B` for `x` `[n, p]` and `b` `[n, m]`.
fn transpose_times(x: &[f64], p: usize, b: &[f64], m: usize) -> Vec<f64> {
    let mut out = vec![0.0f64; p * m];
    for (row, brow) in x.chunks_exact(p).zip(b.chunks_exact(m)) {
        for (i, &xi) in row.iter().enumerate() {
            out[i * m..(i + 1) * m]
                .iter_mut()
                .zip(brow)
                .for_each(|(o, bv)| *o += xi * bv);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The primal and dual forms give the same weights.
    #[test]
    fn primal_and_dual_agree() {
        let data: Vec<f32> = (0..12)
            .map(|i| ((i * 7 % 5) as f32) - 1.5 + i as f32 * 0.1)
            .collect();
        let x = Matrix::new(&data, 3).unwrap(); // 4 rows, 4 features with the bias
        let labels = [0, 1, 2, 1];
        let primal = Ridge::new(x, &labels, 3).unwrap();
        assert!(!primal.dual);
        let mut dual = Ridge::new(x, &labels, 3).unwrap();
        dual.gram = gram_rows(&dual.features, 4, 4);
        dual.rhs = labels
            .iter()
            .flat_map(|&l| (0..3).map(move |c| target(c, l)))
            .collect();
        dual.dual = true;
        let (wp, wd) = (
            primal.solve(0.5).unwrap().weights,
            dual.solve(0.5).unwrap().weights,
        );
        for (a, b) in wp.iter().zip(&wd) {
            assert!((a - b).abs() < 1e-9, "{wp:?} vs {wd:?}");
        }
    }
}
