//! Zero-shot classification as in open_clip: class prompts from templates, class weights =
//! the normalised mean of the unit prompt embeddings, images scored by cosine similarity.

use anyhow::{Result, bail};

use super::matrix::{Matrix, cosine_scores};
use super::{check_labels, pessimistic_rank};

/// The `k` of [`ZeroShot::top5`] before capping at the number of classes.
pub const TOP_K: usize = 5;

/// The prompts to embed: for every class, every template with each `{}` replaced by the class
/// name. Class-major: the prompt of class `c` and template `t` is at `c * templates.len() + t`,
/// the row order [`class_weights`] expects. Errors when there are no classes or templates, or
/// a template has no `{}`.
pub fn prompts<C: AsRef<str>, T: AsRef<str>>(
    class_names: &[C],
    templates: &[T],
) -> Result<Vec<String>> {
    if class_names.is_empty() {
        bail!("zero-shot needs at least one class name");
    }
    if templates.is_empty() {
        bail!("zero-shot needs at least one prompt template");
    }
    if let Some(t) = templates.iter().find(|t| !t.as_ref().contains("{}")) {
        bail!(
            "prompt template {:?} has no `{{}}` for the class name",
            t.as_ref()
        );
    }
    Ok(class_names
        .iter()
        .flat_map(|c| {
            templates
                .iter()
                .map(move |t| t.as_ref().replace("{}", c.as_ref()))
        })
        .collect())
}

/// Class weights `[num_classes, dim]`: per class, the mean over its templates of the
/// unit-normalised prompt embeddings, re-normalised to unit length. `prompt_embeddings` holds
/// `num_classes * templates` rows in the class-major order of [`prompts`]. Errors when the row
/// count is not a positive multiple of `num_classes`, a prompt embedding is zero, or a class's
/// mean is zero.
pub fn class_weights(prompt_embeddings: Matrix, num_classes: usize) -> Result<Vec<f32>> {
    let rows = prompt_embeddings.rows();
    if num_classes == 0 || rows == 0 || !rows.is_multiple_of(num_classes) {
        bail!("{rows} prompt embeddings are not a positive multiple of {num_classes} classes");
    }
    let templates = rows / num_classes;
    let dim = prompt_embeddings.cols();
    let unit = prompt_embeddings.unit_rows("prompt embedding")?;
    let mut weights = Vec::with_capacity(num_classes * dim);
    for (class, block) in unit.chunks_exact(templates * dim).enumerate() {
        let mut mean = vec![0.0f64; dim];
        for row in block.chunks_exact(dim) {
            mean.iter_mut().zip(row).for_each(|(m, v)| *m += v);
        }
        let norm = mean.iter().map(|m| m * m).sum::<f64>().sqrt();
        if norm == 0.0 {
            bail!("the prompt embeddings of class {class} average to the zero vector");
        }
        weights.extend(mean.iter().map(|m| (m / norm) as f32));
    }
    Ok(weights)
}

/// Zero-shot accuracies over a set of images.
#[derive(Clone, Debug, PartialEq)]
pub struct ZeroShot {
    /// Fraction of images whose class scores strictly highest.
    pub top1: f64,
    /// Fraction of images whose class ranks within the top [`ZeroShot::top5_k`].
    pub top5: f64,
    /// The `k` actually used for `top5`: [`TOP_K`] capped at the number of classes (with fewer
    /// than 5 classes it is the class count, so `top5` is 1).
    pub top5_k: usize,
    /// Top-1 accuracy per class; `None` for a class with no images.
    pub per_class_top1: Vec<Option<f64>>,
    /// Number of images evaluated.
    pub images: usize,
}

impl ZeroShot {
    /// The mean of the per-class top-1 accuracies over classes with images (balanced accuracy).
    pub fn mean_per_class_top1(&self) -> f64 {
        let present: Vec<f64> = self.per_class_top1.iter().flatten().copied().collect();
        present.iter().sum::<f64>() / present.len() as f64
    }
}

/// Zero-shot accuracy of `images` `[n, dim]` against `class_weights` `[classes, dim]` by
/// cosine similarity, given each image's class. Errors on zero images, mismatched dimensions
/// or counts, a label outside the class range, or a zero embedding.
pub fn zero_shot_accuracy(
    images: Matrix,
    class_weights: Matrix,
    labels: &[usize],
) -> Result<ZeroShot> {
    let scores = cosine_scores(images, "image", class_weights, "class weight")?;
    accuracy_of_scores(&scores, class_weights.rows(), labels)
}

/// Zero-shot accuracy from precomputed scores `[images, classes]` (e.g. logits computed on a
/// device); same rules and errors as [`zero_shot_accuracy`].
pub fn zero_shot_from_scores(scores: Matrix, labels: &[usize]) -> Result<ZeroShot> {
    let as_f64: Vec<f64> = scores
        .iter_rows()
        .flatten()
        .map(|&v| f64::from(v))
        .collect();
    accuracy_of_scores(&as_f64, scores.cols(), labels)
}

fn accuracy_of_scores(scores: &[f64], num_classes: usize, labels: &[usize]) -> Result<ZeroShot> {
    if num_classes == 0 {
        bail!("zero-shot needs at least one class");
    }
    let images = scores.len() / num_classes;
    if images == 0 {
        bail!("zero-shot accuracy of zero images is undefined");
    }
    if labels.len() != images {
        bail!("{images} images but {} labels", labels.len());
    }
    check_labels(labels, num_classes)?;
    let top5_k = TOP_K.min(num_classes);
    let (mut top1, mut top5) = (0usize, 0usize);
    let mut seen = vec![0usize; num_classes];
    let mut right = vec![0usize; num_classes];
    for (row, &label) in scores.chunks_exact(num_classes).zip(labels) {
        let rank = pessimistic_rank(row, label);
        seen[label] += 1;
        if rank == 1 {
            top1 += 1;
            right[label] += 1;
        }
        if rank <= top5_k {
            top5 += 1;
        }
    }
    Ok(ZeroShot {
        top1: top1 as f64 / images as f64,
        top5: top5 as f64 / images as f64,
        top5_k,
        per_class_top1: seen
            .iter()
            .zip(&right)
            .map(|(&s, &r)| (s > 0).then(|| r as f64 / s as f64))
            .collect(),
        images,
    })
}
