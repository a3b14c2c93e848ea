//! A validated row-major view of an `f32` matrix.

use anyhow::{Result, bail};

/// A row-major `[rows, cols]` view of finite `f32` values: embeddings (one row per example,
/// `cols` = embedding dimension) or a score matrix.
#[derive(Clone, Copy, Debug)]
pub struct Matrix<'a> {
    data: &'a [f32],
    cols: usize,
}

impl<'a> Matrix<'a> {
    /// Wraps `data` as rows of `cols` values; errors when `cols` is 0, the length is not a
    /// multiple of `cols`, or a value is NaN or infinite (naming its row and column).
    pub fn new(data: &'a [f32], cols: usize) -> Result<Matrix<'a>> {
        if cols == 0 {
            bail!("matrix with 0 columns");
        }
        if !data.len().is_multiple_of(cols) {
            bail!("{} values do not divide into rows of {cols}", data.len());
        }
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            bail!(
                "non-finite value {} at row {}, column {}",
                data[i],
                i / cols,
                i % cols
            );
        }
        Ok(Matrix { data, cols })
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.data.len() / self.cols
    }

    /// Number of columns (the embedding dimension).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Row `i`; callers index within `0..rows()`.
    pub(crate) fn row(&self, i: usize) -> &'a [f32] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// The rows in order.
    pub fn iter_rows(&self) -> impl Iterator<Item = &'a [f32]> + 'a {
        self.data.chunks_exact(self.cols)
    }

    /// The rows scaled to unit L2 norm; errors on a zero row, naming `what` and its index.
    pub(crate) fn unit_rows(&self, what: &str) -> Result<Vec<f64>> {
        let mut out = Vec::with_capacity(self.data.len());
        for (i, row) in self.iter_rows().enumerate() {
            let norm = row
                .iter()
                .map(|&v| f64::from(v).powi(2))
                .sum::<f64>()
                .sqrt();
            if norm == 0.0 {
                bail!("{what} {i} is the zero vector and has no direction");
            }
            out.extend(row.iter().map(|&v| f64::from(v) / norm));
        }
        Ok(out)
    }
}

/// Dot product in f64, over 8 independent lanes so that it vectorises.
pub(crate) fn dot(a: &[f64], b: &[f64]) -> f64 {
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f64 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    let mut lanes = [0.0f64; 8];
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            lanes[k] += x[k] * y[k];
        }
    }
    lanes.iter().sum::<f64>() + tail
}

/// Cosine similarities `[a.rows, b.rows]` of two matrices with the same number of columns.
pub(crate) fn cosine_scores(a: Matrix, a_what: &str, b: Matrix, b_what: &str) -> Result<Vec<f64>> {
    if a.cols() != b.cols() {
        bail!(
            "{a_what} embeddings have dimension {} but {b_what} embeddings have {}",
            a.cols(),
            b.cols()
        );
    }
    let dim = a.cols();
    let ua = a.unit_rows(a_what)?;
    let ub = b.unit_rows(b_what)?;
    let mut scores = Vec::with_capacity(a.rows() * b.rows());
    for ra in ua.chunks_exact(dim) {
        scores.extend(ub.chunks_exact(dim).map(|rb| dot(ra, rb)));
    }
    Ok(scores)
}
