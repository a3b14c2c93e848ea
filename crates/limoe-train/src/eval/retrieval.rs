//! Image-text retrieval on paired embeddings: row `i` of the images matches row `i` of the
//! texts. Recall@1/5/10 and the median rank in both directions, by cosine similarity, ties
//! ranked as open_clip's argsort ranks them (see [`crate::eval`]).

use anyhow::{Result, bail};

use super::argsort_rank;
use super::matrix::{Matrix, cosine_scores};

/// Retrieval metrics of one direction (queries of one modality, candidates of the other).
#[derive(Clone, Debug, PartialEq)]
pub struct Recall {
    /// Fraction of queries whose match ranks first.
    pub r1: f64,
    /// Fraction of queries whose match ranks within the top 5 (1 when there are at most 5 pairs).
    pub r5: f64,
    /// Fraction of queries whose match ranks within the top 10 (1 when there are at most 10 pairs).
    pub r10: f64,
    /// Median of the 1-based ranks of the matches; the mean of the two middle ranks when the
    /// number of queries is even.
    pub median_rank: f64,
}

/// Retrieval metrics in both directions.
#[derive(Clone, Debug, PartialEq)]
pub struct Retrieval {
    /// Each image queries all texts.
    pub image_to_text: Recall,
    /// Each text queries all images.
    pub text_to_image: Recall,
    /// Number of pairs.
    pub pairs: usize,
}

/// Retrieval metrics of paired `images` and `texts` (both `[n, dim]`, row `i` a pair) by cosine
/// similarity. Errors on zero pairs, different row counts or dimensions, or a zero embedding.
pub fn retrieval(images: Matrix, texts: Matrix) -> Result<Retrieval> {
    if images.rows() != texts.rows() {
        bail!(
            "{} images but {} texts; retrieval needs one text per image",
            images.rows(),
            texts.rows()
        );
    }
    let scores = cosine_scores(images, "image", texts, "text")?;
    of_scores(&scores, images.rows())
}

/// Retrieval metrics from a precomputed square score matrix `[images, texts]` (entry `(i, j)`
/// scores image `i` against text `j`; the diagonal holds the true pairs). Errors when it is
/// empty or not square.
pub fn retrieval_from_scores(scores: Matrix) -> Result<Retrieval> {
    if scores.rows() != scores.cols() {
        bail!(
            "the score matrix is {}x{}; retrieval needs a square one",
            scores.rows(),
            scores.cols()
        );
    }
    let as_f64: Vec<f64> = scores
        .iter_rows()
        .flatten()
        .map(|&v| f64::from(v))
        .collect();
    of_scores(&as_f64, scores.cols())
}

fn of_scores(scores: &[f64], n: usize) -> Result<Retrieval> {
    if n == 0 {
        bail!("retrieval metrics of zero pairs are undefined");
    }
    let image_ranks: Vec<usize> = scores
        .chunks_exact(n)
        .enumerate()
        .map(|(i, row)| argsort_rank(row, i))
        .collect();
    let text_ranks: Vec<usize> = (0..n)
        .map(|j| {
            let column: Vec<f64> = (0..n).map(|i| scores[i * n + j]).collect();
            argsort_rank(&column, j)
        })
        .collect();
    Ok(Retrieval {
        image_to_text: recall(image_ranks),
        text_to_image: recall(text_ranks),
        pairs: n,
    })
}

/// Recall@k and the median of non-empty 1-based ranks.
fn recall(mut ranks: Vec<usize>) -> Recall {
    let n = ranks.len() as f64;
    let at = |k: usize| ranks.iter().filter(|&&r| r <= k).count() as f64 / n;
    let (r1, r5, r10) = (at(1), at(5), at(10));
    ranks.sort_unstable();
    let mid = ranks.len() / 2;
    let median_rank = if ranks.len() % 2 == 1 {
        ranks[mid] as f64
    } else {
        (ranks[mid - 1] + ranks[mid]) as f64 / 2.0
    };
    Recall {
        r1,
        r5,
        r10,
        median_rank,
    }
}
