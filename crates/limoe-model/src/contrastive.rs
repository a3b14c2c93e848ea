//! The symmetric InfoNCE loss of CLIP over a batch of paired embeddings.

use candle_core::{D, Result, Tensor};

use limoe_ops::log_softmax;

/// Pairwise logits `scale * image @ text^T` [B, B] of unit embeddings.
pub fn logits(image: &Tensor, text: &Tensor, scale: &Tensor) -> Result<Tensor> {
    image.matmul(&text.t()?)?.broadcast_mul(scale)
}

/// Mean of the image->text and text->image cross-entropies, pair i matching pair i.
pub fn contrastive_loss(logits: &Tensor) -> Result<Tensor> {
    let batch = logits.dim(0)?;
    let targets = Tensor::arange(0u32, batch as u32, logits.device())?.unsqueeze(1)?;
    let image_to_text = log_softmax(logits)?.gather(&targets, 1)?.mean_all()?;
    let text_to_image = log_softmax(&logits.t()?.contiguous()?)?
        .gather(&targets, 1)?
        .mean_all()?;
    (image_to_text + text_to_image)? * -0.5
}

/// Fractions of rows (image->text) and columns (text->image) whose best match is the pair.
pub fn accuracy(logits: &Tensor) -> Result<(f64, f64)> {
    let batch = logits.dim(0)?;
    let hits = |best: Vec<u32>| {
        best.iter()
            .enumerate()
            .filter(|&(i, &j)| i == j as usize)
            .count() as f64
            / batch as f64
    };
    let rows = hits(logits.argmax(D::Minus1)?.to_vec1()?);
    let columns = hits(logits.t()?.argmax(D::Minus1)?.to_vec1()?);
    Ok((rows, columns))
}
