//! Zero-shot classification of a person's images against the class names they give: the
//! class weights of open_clip's prompt ensembling (crates/limoe-train/src/eval/zero_shot.rs)
//! and, as CLIP reports them, class probabilities by a softmax of the cosine similarities at
//! the model's logit scale.

use anyhow::bail;

use crate::embed::embed_texts;
use crate::eval::zero_shot::{class_weights, prompts};
use crate::eval::{Matrix, cosine_scores};
use crate::model_build::Built;

/// Class weights of named classes, and the scale their similarities are multiplied by.
pub struct Classifier {
    names: Vec<String>,
    weights: Vec<f32>,
    dim: usize,
    scale: f64,
}

/// One class and its probability.
#[derive(Clone, Debug, PartialEq)]
pub struct Scored<'a> {
    /// The class name.
    pub class: &'a str,
    /// Its probability among all the classes.
    pub probability: f64,
}

impl Classifier {
    /// The classifier of `names` with every template of `templates` (each with its `{}`),
    /// prompts embedded `batch_size` at a time. Errors when there is no class, a name is
    /// empty or named twice, or a template has no `{}`.
    pub fn new(
        built: &Built,
        names: Vec<String>,
        templates: &[String],
        batch_size: usize,
    ) -> anyhow::Result<Classifier> {
        if let Some(i) = names.iter().position(|n| n.trim().is_empty()) {
            bail!(
                "class {} of {} is an empty name; give every class a name",
                i + 1,
                names.len()
            );
        }
        for (i, name) in names.iter().enumerate() {
            if let Some(first) = names[..i].iter().position(|n| n == name) {
                bail!(
                    "class `{name}` is named twice (classes {} and {})",
                    first + 1,
                    i + 1
                );
            }
        }
        let prompts = prompts(&names, templates)?;
        let (model, preprocess) = (&built.model, &built.preprocess);
        let embedded = embed_texts(model, &built.device, preprocess, &prompts, batch_size)?;
        let dim = model.spec().embed_dim();
        let weights = class_weights(Matrix::new(&embedded, dim)?, names.len())?;
        let scale = model.logit_scale()?.flatten_all()?.to_vec1::<f32>()?;
        let [scale] = scale[..] else {
            bail!("the model's logit scale is not one number");
        };
        Ok(Classifier {
            names,
            weights,
            dim,
            scale: f64::from(scale),
        })
    }

    /// Every class's probability for each of the unit image embeddings `images`
    /// (`[images, dim]`), in class order.
    pub fn probabilities(&self, images: &[f32]) -> anyhow::Result<Vec<Vec<f64>>> {
        let scores = cosine_scores(
            Matrix::new(images, self.dim)?,
            "image",
            Matrix::new(&self.weights, self.dim)?,
            "class weight",
        )?;
        Ok(scores
            .chunks_exact(self.names.len())
            .map(|row| softmax(row, self.scale))
            .collect())
    }

    /// The `k` most probable classes of one image's `probabilities`, most probable first
    /// (ties in class order).
    pub fn top<'a>(&'a self, probabilities: &[f64], k: usize) -> Vec<Scored<'a>> {
        let mut order: Vec<usize> = (0..self.names.len()).collect();
        order.sort_by(|&a, &b| probabilities[b].total_cmp(&probabilities[a]));
        (order.into_iter().take(k))
            .map(|c| Scored {
                class: &self.names[c],
                probability: probabilities[c],
            })
            .collect()
    }
}

/// `exp(scale * s) / sum exp(scale * s')` over `scores`, shifted by the largest for
/// stability.
fn softmax(scores: &[f64], scale: f64) -> Vec<f64> {
    let top = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exps: Vec<f64> = scores.iter().map(|s| (scale * (s - top)).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|e| e / sum).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_sums_to_one_and_keeps_the_order() {
        let p = softmax(&[0.2, 0.9, -0.5], 10.0);
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(p[1] > p[0] && p[0] > p[2]);
        let flat = softmax(&[0.3, 0.3], 100.0);
        assert_eq!(flat, [0.5, 0.5]);
    }
}
