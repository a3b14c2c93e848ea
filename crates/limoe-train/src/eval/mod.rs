//! Evaluation metrics as pure host-side functions over embeddings: zero-shot classification
//! ([`zero_shot`]), image-text retrieval ([`retrieval`]) and the few-shot ridge probe
//! ([`ridge`], [`few_shot`]).
//!
//! Inputs are row-major `[rows, dim]` `f32` buffers wrapped in a validated [`Matrix`].
//!
//! Ties: classification breaks them pessimistically (the rank of the right class is 1 plus the
//! number of *other* classes scoring at least as high, so a collapsed model whose scores are
//! all equal gets no credit). Retrieval ranks as open_clip does, by a stable descending
//! argsort: among equal scores the candidate with the lower index ranks first. Templated
//! captions are identical within a class, and a pessimistic rank would put every such pair
//! behind all of its class's other captions.

pub mod cholesky;
pub mod few_shot;
mod matrix;
pub mod retrieval;
pub mod ridge;
pub mod zero_shot;

pub use matrix::Matrix;
pub(crate) use matrix::cosine_scores;

/// The pessimistic 1-based rank of `scores[target]`: 1 + the number of other entries `>=` it.
fn pessimistic_rank(scores: &[f64], target: usize) -> usize {
    let own = scores[target];
    1 + scores
        .iter()
        .enumerate()
        .filter(|&(j, &s)| j != target && s >= own)
        .count()
}

/// The 1-based rank of `scores[target]` in a stable descending argsort: 1 + the number of
/// entries above it + the number of equal entries before it.
fn argsort_rank(scores: &[f64], target: usize) -> usize {
    let own = scores[target];
    let above = scores.iter().filter(|&&s| s > own).count();
    let tied_before = scores[..target].iter().filter(|&&s| s == own).count();
    1 + above + tied_before
}

/// Checks that every label is below `num_classes`, naming the first one that is not.
fn check_labels(labels: &[usize], num_classes: usize) -> anyhow::Result<()> {
    match labels.iter().enumerate().find(|&(_, &l)| l >= num_classes) {
        Some((i, &l)) => {
            anyhow::bail!("label {l} of example {i} is outside the class range 0..{num_classes}")
        }
        None => Ok(()),
    }
}
