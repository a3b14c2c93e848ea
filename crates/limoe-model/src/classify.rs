//! A classifier's label losses: softmax cross-entropy, or V-MoE's sigmoid cross-entropy on
//! JFT (one binary problem per class).

use candle_core::{D, DType, Result, Tensor};
use limoe_core::spec::LabelLoss;
use limoe_ops::log_softmax;

/// The mean over the batch of `loss` between class logits [B, classes] and each row's class
/// index `classes` [B] (u32).
pub fn label_loss(logits: &Tensor, classes: &Tensor, loss: LabelLoss) -> Result<Tensor> {
    let targets = classes.to_dtype(DType::U32)?.unsqueeze(1)?;
    match loss {
        LabelLoss::Softmax => log_softmax(logits)?.gather(&targets, 1)?.mean_all()?.neg(),
        LabelLoss::Sigmoid => {
            // Summed over the classes, averaged over the batch, as vmoe's sigmoid_xent:
            // softplus(x) - x * y, with softplus(x) = max(x, 0) + ln(1 + e^-|x|).
            let one_hot = Tensor::zeros(logits.shape(), logits.dtype(), logits.device())?
                .scatter_add(
                    &targets,
                    &Tensor::ones(targets.shape(), logits.dtype(), logits.device())?,
                    1,
                )?;
            let softplus = (logits.relu()? + (logits.abs()?.neg()?.exp()? + 1.0)?.log()?)?;
            (softplus - (logits * one_hot)?)?.sum(D::Minus1)?.mean_all()
        }
    }
}

/// The class index with the largest logit of each row of `logits` [B, classes].
pub fn predicted(logits: &Tensor) -> Result<Vec<u32>> {
    logits.argmax(D::Minus1)?.to_vec1()
}
