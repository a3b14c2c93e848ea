//! Embedding a split of a dataset with a trained model (evaluation routing), collecting the
//! routing statistics and, optionally, every token's expert.

use std::collections::HashSet;
use std::path::Path;

use candle_core::Device;
use limoe_core::logs::AssignmentRow;
use limoe_data::batch::{Batcher, Preprocess};
use limoe_data::loader::{Loader, LoaderOptions, Mode};
use limoe_data::split::Split;
use limoe_model::moe::RouteMode;
use limoe_model::{Model, Texts};
use limoe_ops::pool::on_pool;

use crate::inputs::{routed_counts, upload, upload_images};
use crate::routing_log::{RoutingTally, TokenOrigins};

/// Unit embeddings of a split's pairs, row-major `[pairs, dim]`, with their metadata; for
/// a classifier, its class logits in place of the image embeddings, and no captions.
#[derive(Default)]
pub struct SplitEmbeddings {
    /// Embedding size (a classifier's: its classes).
    pub dim: usize,
    /// Image embeddings (a classifier's class logits).
    pub image: Vec<f32>,
    /// Size of the pre-logit features (the model width).
    pub width: usize,
    /// Image pre-logits, `[pairs, width]`: the features the embeddings are projected from.
    pub pre_logits: Vec<f32>,
    /// Caption embeddings (none from a classifier).
    pub text: Vec<f32>,
    /// Example keys.
    pub keys: Vec<String>,
    /// Class labels, where the source has them.
    pub labels: Vec<Option<i32>>,
    /// Class names, where the source has them.
    pub label_names: Vec<Option<String>>,
}

impl SplitEmbeddings {
    /// The number of pairs.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no pair was embedded.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The first `n` pairs (all of them when there are fewer).
    pub fn first(&self, n: usize) -> SplitEmbeddings {
        let n = n.min(self.len());
        SplitEmbeddings {
            dim: self.dim,
            image: self.image[..n * self.dim].to_vec(),
            width: self.width,
            pre_logits: self.pre_logits[..n * self.width].to_vec(),
            text: self.text[..(n * self.dim).min(self.text.len())].to_vec(),
            keys: self.keys[..n].to_vec(),
            labels: self.labels[..n].to_vec(),
            label_names: self.label_names[..n].to_vec(),
        }
    }
}

/// What to embed and what to collect on the way.
pub struct EmbedRequest<'a> {
    /// The dataset directory (an ingest output).
    pub dir: &'a Path,
    /// Which split.
    pub split: Split,
    /// At most this many pairs (in file order).
    pub limit: Option<usize>,
    /// Pairs per forward pass.
    pub batch_size: usize,
    /// Preprocessing matching the model.
    pub preprocess: &'a Preprocess,
    /// The step the assignments are logged at; `None` collects none.
    pub assignments_step: Option<i64>,
    /// When given, only the pairs with these keys are embedded.
    pub only: Option<&'a HashSet<String>>,
    /// How the images route: the spec's evaluation routing, or an inference capacity.
    pub mode: RouteMode,
}

/// Embeds the split in file order; adds routing statistics to `tally` and assignment rows to
/// `assignments`.
pub fn embed_split(
    model: &Model,
    device: &Device,
    request: &EmbedRequest,
    tally: &mut RoutingTally,
    assignments: &mut Vec<AssignmentRow>,
) -> anyhow::Result<SplitEmbeddings> {
    let options = LoaderOptions::in_file_order(request.split);
    let loader = Loader::with_mode(request.dir, options, Mode::Epoch)?;
    let mut batcher = Batcher::new(
        loader,
        request.preprocess.clone(),
        request.batch_size,
        false,
    )?;
    if let Some(keys) = request.only {
        batcher = batcher.only_keys(keys.clone());
    }
    let spec = model.spec();
    let classes = spec.classifier.map(|c| c.classes);
    let mut out = SplitEmbeddings {
        dim: classes.unwrap_or(spec.embed_dim()),
        width: spec.width,
        ..SplitEmbeddings::default()
    };
    let limit = request.limit.unwrap_or(usize::MAX);
    while out.len() < limit {
        let Some(batch) = batcher.next_batch()? else {
            break;
        };
        let take = batch.len().min(limit - out.len());
        let images = upload_images(&batch, device)?;
        let texts = match classes {
            Some(_) => None,
            None => Some(upload(&batch, spec.vocab_size, device)?.1),
        };
        let encoded = on_pool(|| model.encode(Some(&images), texts.as_ref(), request.mode))?;
        let (Some(image), Some(pre_logits)) = (
            encoded.image.as_ref().or(encoded.class_logits.as_ref()),
            &encoded.image_pre_logits,
        ) else {
            anyhow::bail!("the model returned no embedding for a batch of images");
        };
        tally.add(&encoded.routing, routed_counts(&batch, texts.is_some()))?;
        if let Some(step) = request.assignments_step {
            // A classifier routes no caption token.
            let mask: &[u8] = if texts.is_some() { &batch.mask } else { &[] };
            let origins =
                TokenOrigins::new(batch.len(), batch.num_patches, mask, batch.text_length);
            assignments.extend(origins.assignments(
                &encoded.routing,
                step,
                &batch.keys[..take],
                &batch.labels[..take],
            )?);
        }
        let (dim, width) = (out.dim, out.width);
        let image: Vec<f32> = image.flatten_all()?.to_vec1()?;
        let pre_logits: Vec<f32> = pre_logits.flatten_all()?.to_vec1()?;
        out.image.extend_from_slice(&image[..take * dim]);
        out.pre_logits
            .extend_from_slice(&pre_logits[..take * width]);
        if let Some(text) = &encoded.text {
            let text: Vec<f32> = text.flatten_all()?.to_vec1()?;
            out.text.extend_from_slice(&text[..take * dim]);
        }
        out.keys.extend(batch.keys.into_iter().take(take));
        out.labels.extend(batch.labels.into_iter().take(take));
        out.label_names
            .extend(batch.label_names.into_iter().take(take));
    }
    Ok(out)
}

/// Unit embeddings of captions (e.g. zero-shot prompts), `[captions, dim]`.
pub fn embed_texts(
    model: &Model,
    device: &Device,
    preprocess: &Preprocess,
    captions: &[String],
    batch_size: usize,
) -> anyhow::Result<Vec<f32>> {
    let tokenizer = &preprocess.tokenizer;
    let length = tokenizer.max_len();
    let mut out = Vec::with_capacity(captions.len() * model.spec().embed_dim());
    for chunk in captions.chunks(batch_size.max(1)) {
        let mut ids = vec![0u32; chunk.len() * length];
        let mut mask = vec![0u8; chunk.len() * length];
        for (i, caption) in chunk.iter().enumerate() {
            let range = i * length..(i + 1) * length;
            tokenizer.encode_into(caption, &mut ids[range.clone()], &mut mask[range]);
        }
        let mask: Vec<bool> = mask.iter().map(|&m| m != 0).collect();
        let texts = Texts::new(
            ids,
            &mask,
            chunk.len(),
            length,
            tokenizer.vocab_size(),
            device,
        )?;
        let encoded = on_pool(|| model.encode(None, Some(&texts), RouteMode::Eval))?;
        let Some(text) = encoded.text else {
            anyhow::bail!("the model returned no embedding for a batch of captions");
        };
        out.extend(text.flatten_all()?.to_vec1::<f32>()?);
    }
    Ok(out)
}
