//! A bound on what one batch holds before the model sees it: the batcher decodes every pair
//! of a batch into `image_size^2 x 3` pixel values and `text_length` token ids, and keeps a
//! few batches ready, so the size of a batch is an allocation of its own, before and besides
//! the model's (which the train stage checks against the machine before it starts).

use super::Spec;
use super::check::Checker;
use super::model::{CHANNELS, MAX_IMAGE_SIDE};
use super::path::KeyPath;

/// The most input values one batch may hold: 2^32, 16 GiB of f32. It leaves room for the
/// LIMoE paper's batch of 16384 L/16 pairs (150544 values each) in one micro-batch, which
/// the train stage then finds too large for most machines, while a batch size like 10^12
/// fails here instead of aborting an allocation.
const MAX_BATCH_VALUES: usize = 1 << 32;

/// The most pairs in one batch, 64 times the LIMoE paper's 16384: the batcher reserves room
/// for a whole batch of decoded pairs before it reads the first.
const MAX_BATCH_PAIRS: usize = 1 << 20;

/// Checks the batches of training (one micro-batch at a time), of the periodic evaluation
/// and of the final evaluation against [`MAX_BATCH_PAIRS`] and [`MAX_BATCH_VALUES`].
pub(super) fn check_batches(spec: &Spec, c: &mut Checker) {
    let model = &spec.model;
    let root = KeyPath::root();
    if model.image_size > MAX_IMAGE_SIDE {
        return; // reported at model.image_size
    }
    let pixels = model.image_size.pow(2) * CHANNELS;
    let per_pair = pixels.saturating_add(model.text_length);
    if per_pair > MAX_BATCH_VALUES {
        c.error(
            &root.key("model").key("text_length"),
            format!(
                "{} token ids a caption are over the limit of {MAX_BATCH_VALUES} input values \
                 for a whole batch",
                model.text_length
            ),
            Some("lower text_length (the LIMoE models use 16)".into()),
        );
        return;
    }
    let train = &spec.train;
    let batches = [
        (
            root.key("train").key("batch_size"),
            "a micro-batch (batch_size / accumulation)",
            train.batch_size / train.accumulation.max(1),
            "raise train.accumulation (micro-batches per step) or lower train.batch_size",
        ),
        (
            root.key("train").key("monitor").key("batch_size"),
            "a batch",
            train.monitor.batch_size,
            "lower train.monitor.batch_size",
        ),
        (
            root.key("eval").key("batch_size"),
            "a batch",
            spec.eval.batch_size,
            "lower eval.batch_size",
        ),
    ];
    for (at, what, pairs, hint) in batches {
        let values = pairs.saturating_mul(per_pair);
        if pairs > MAX_BATCH_PAIRS {
            c.error(
                &at,
                format!("{what} of {pairs} pairs is over the limit of {MAX_BATCH_PAIRS} pairs"),
                Some(format!(
                    "{hint}: at most {MAX_BATCH_PAIRS} pairs fit a batch"
                )),
            );
        } else if values > MAX_BATCH_VALUES {
            c.error(
                &at,
                format!(
                    "{what} of {pairs} pairs holds {values} input values ({pixels} pixel \
                     values and {} token ids a pair), over the limit of {MAX_BATCH_VALUES}",
                    model.text_length
                ),
                Some(format!(
                    "{hint}: at most {} pairs of this model fit the limit",
                    MAX_BATCH_VALUES / per_pair
                )),
            );
        }
    }
}
