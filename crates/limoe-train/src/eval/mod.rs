//! Evaluation metrics as pure host-side functions over embeddings: zero-shot classification
//! ([`zero_shot`]), image-text retrieval ([`retrieval`]) and the few-shot ridge probe
//! ([`ridge`], [`few_shot`]).
//!
//! Inputs are row-major `[rows, dim]` `f32` buffers wrapped in a validated [`Matrix`].
//!
//! Ties are broken pessimistically everywhere: the rank of the right answer is 1 plus the
//! number of *other* candidates scoring at least as high, so an example counts as top-1 correct
//! only when its right answer scores strictly higher than every other candidate (a collapsed
//! model whose scores are all equal gets no credit).

pub mod cholesky;
pub mod few_shot;
mod matrix;
pub mod retrieval;
pub mod ridge;
pub mod zero_shot;

pub use matrix::Matrix;

/// The pessimistic 1-based rank of `scores[target]`: 1 + the number of other entries `>=` it.
fn pessimistic_rank(scores: &[f64], target: usize) -> usize {
    let own = scores[target];
    1 + scores
        .iter()
        .enumerate()
        .filter(|&(j, &s)| j != target && s >= own)
        .count()
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
