//! Batches of model inputs as host buffers: pairs from a [`Loader`], images decoded, resized
//! and patchified and captions tokenized in parallel (rayon), optionally prepared ahead in a
//! background thread with a bounded queue ([`Batcher::prefetch`]).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};
use std::thread::JoinHandle;

use anyhow::{Context, anyhow, bail};
use rayon::prelude::*;

use crate::loader::{Loader, Position};
use crate::patches::PatchConfig;
use crate::shards::Pair;
use crate::tokenizer::Tokenizer;

/// One batch of `len()` examples, every array row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// Keys of the pairs.
    pub keys: Vec<String>,
    /// Captions (before tokenization).
    pub captions: Vec<String>,
    /// Class labels, where the source has classes.
    pub labels: Vec<Option<i32>>,
    /// Class names, where the source has classes.
    pub label_names: Vec<Option<String>>,
    /// Image patches, `[batch, num_patches, patch_dim]` (layout: [`crate::patches`]).
    pub patches: Vec<f32>,
    /// Token ids, `[batch, text_length]`, padded with 0.
    pub tokens: Vec<u32>,
    /// Attention mask, `[batch, text_length]`: 1 on real tokens, 0 on padding.
    pub mask: Vec<u8>,
    /// Patches per image.
    pub num_patches: usize,
    /// Values per patch (`patch * patch * 3`).
    pub patch_dim: usize,
    /// Tokens per caption.
    pub text_length: usize,
    /// The loader's position after this batch: resuming from it yields the next batch.
    pub position: Position,
}

impl Batch {
    /// Examples in the batch.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True for a batch without examples (a batcher never yields one).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Rank `rank`'s share of a batch split evenly over `ranks` (data parallelism): the
    /// `len() / ranks` examples starting at `rank * len() / ranks`. Every rank reads the
    /// same batches, so the shares are disjoint and the loader position stays one for all.
    pub fn share(&self, rank: usize, ranks: usize) -> anyhow::Result<Batch> {
        let n = self.len();
        if ranks == 0 || rank >= ranks || !n.is_multiple_of(ranks) {
            bail!("a batch of {n} examples does not split evenly over {ranks} ranks");
        }
        let per = n / ranks;
        let rows = rank * per..(rank + 1) * per;
        let slice = |values_per_row: usize| rows.start * values_per_row..rows.end * values_per_row;
        Ok(Batch {
            keys: self.keys[rows.clone()].to_vec(),
            captions: self.captions[rows.clone()].to_vec(),
            labels: self.labels[rows.clone()].to_vec(),
            label_names: self.label_names[rows.clone()].to_vec(),
            patches: self.patches[slice(self.num_patches * self.patch_dim)].to_vec(),
            tokens: self.tokens[slice(self.text_length)].to_vec(),
            mask: self.mask[slice(self.text_length)].to_vec(),
            num_patches: self.num_patches,
            patch_dim: self.patch_dim,
            text_length: self.text_length,
            position: self.position.clone(),
        })
    }
}

/// How pairs become model inputs.
#[derive(Clone)]
pub struct Preprocess {
    /// Image size and patch size.
    pub patches: PatchConfig,
    /// The caption tokenizer (shared between batchers).
    pub tokenizer: Arc<Tokenizer>,
}

/// One prepared example: its patches, token ids and mask.
struct Prepared {
    patches: Vec<f32>,
    tokens: Vec<u32>,
    mask: Vec<u8>,
}

impl Preprocess {
    /// Decodes, resizes, normalises and patchifies the image and tokenizes the caption of
    /// one pair; an undecodable image is an error.
    fn prepare(&self, pair: &Pair) -> anyhow::Result<Prepared> {
        let mut patches = vec![0.0; self.patches.image_len()];
        self.patches.bytes_to_patches(&pair.image, &mut patches)?;
        let (tokens, mask) = self.tokenizer.encode(&pair.caption);
        Ok(Prepared {
            patches,
            tokens,
            mask,
        })
    }
}

/// Turns the pairs of a [`Loader`] into [`Batch`]es. Pairs whose image cannot be decoded are
/// skipped (counted in the loader's `undecodable`) and replaced by the next pairs.
pub struct Batcher {
    loader: Loader,
    preprocess: Preprocess,
    batch_size: usize,
    drop_last: bool,
    failed: bool,
    /// When set, only the pairs with these keys are batched.
    only: Option<HashSet<String>>,
}

impl Batcher {
    /// Batches of `batch_size` (at least 1) from `loader`; the last, smaller batch of an epoch
    /// is yielded unless `drop_last`.
    pub fn new(
        loader: Loader,
        preprocess: Preprocess,
        batch_size: usize,
        drop_last: bool,
    ) -> anyhow::Result<Batcher> {
        if batch_size == 0 {
            bail!("batch size 0: a batch needs at least one example");
        }
        Ok(Batcher {
            loader,
            preprocess,
            batch_size,
            drop_last,
            failed: false,
            only: None,
        })
    }

    /// Batches only the pairs whose key is in `keys` (the others are passed over before any
    /// decoding), e.g. a sample drawn from the split beforehand.
    pub fn only_keys(mut self, keys: HashSet<String>) -> Batcher {
        self.only = Some(keys);
        self
    }

    /// The next batch, `None` at the end of the loader's pairs.
    pub fn next_batch(&mut self) -> anyhow::Result<Option<Batch>> {
        let mut ready: Vec<(Pair, Prepared)> = Vec::with_capacity(self.batch_size);
        while ready.len() < self.batch_size {
            let want = self.batch_size - ready.len();
            let mut pairs: Vec<Pair> = self
                .loader
                .by_ref()
                .take(want)
                .collect::<anyhow::Result<_>>()?;
            let exhausted = pairs.len() < want;
            if let Some(only) = &self.only {
                pairs.retain(|pair| only.contains(&pair.key));
            }
            let prepared: Vec<anyhow::Result<Prepared>> = pairs
                .par_iter()
                .map(|pair| self.preprocess.prepare(pair))
                .collect();
            for (pair, result) in pairs.into_iter().zip(prepared) {
                match result {
                    Ok(p) => ready.push((pair, p)),
                    Err(e) => {
                        tracing::debug!("skipping pair `{}`: {e:#}", pair.key);
                        self.loader.count_undecodable();
                    }
                }
            }
            if exhausted {
                break;
            }
        }
        if ready.is_empty() || (self.drop_last && ready.len() < self.batch_size) {
            return Ok(None);
        }
        let config = self.preprocess.patches;
        let text_length = self.preprocess.tokenizer.max_len();
        let n = ready.len();
        let mut batch = Batch {
            keys: Vec::with_capacity(n),
            captions: Vec::with_capacity(n),
            labels: Vec::with_capacity(n),
            label_names: Vec::with_capacity(n),
            patches: Vec::with_capacity(n * config.image_len()),
            tokens: Vec::with_capacity(n * text_length),
            mask: Vec::with_capacity(n * text_length),
            num_patches: config.num_patches(),
            patch_dim: config.patch_dim(),
            text_length,
            position: self.loader.position(),
        };
        for (pair, prepared) in ready {
            batch.keys.push(pair.key);
            batch.captions.push(pair.caption);
            batch.labels.push(pair.label);
            batch.label_names.push(pair.label_name);
            batch.patches.extend_from_slice(&prepared.patches);
            batch.tokens.extend_from_slice(&prepared.tokens);
            batch.mask.extend_from_slice(&prepared.mask);
        }
        Ok(Some(batch))
    }

    /// The loader's position after the last batch made.
    pub fn position(&self) -> Position {
        self.loader.position()
    }

    /// Prepares batches in a background thread, keeping at most `depth` (at least 1) ready
    /// ahead of the consumer. The batches are the same, in the same order, as without it.
    pub fn prefetch(self, depth: usize) -> anyhow::Result<Prefetcher> {
        let (tx, rx) = sync_channel(depth.max(1));
        let handle = std::thread::Builder::new()
            .name("limoe-loader".into())
            .spawn(move || {
                for item in self {
                    let stop = item.is_err();
                    if tx.send(item).is_err() || stop {
                        break;
                    }
                }
            })
            .context("cannot start the loader thread")?;
        Ok(Prefetcher {
            rx,
            handle: Some(handle),
        })
    }
}

impl Iterator for Batcher {
    type Item = anyhow::Result<Batch>;

    fn next(&mut self) -> Option<anyhow::Result<Batch>> {
        if self.failed {
            return None;
        }
        let item = self.next_batch().transpose();
        self.failed = matches!(item, Some(Err(_)));
        item
    }
}

/// Batches prepared ahead in a background thread (see [`Batcher::prefetch`]). An error of the
/// thread, a panic included, arrives as an error item and ends the stream. Dropping it stops
/// the thread after the batch it is preparing.
pub struct Prefetcher {
    rx: Receiver<anyhow::Result<Batch>>,
    handle: Option<JoinHandle<()>>,
}

impl Iterator for Prefetcher {
    type Item = anyhow::Result<Batch>;

    fn next(&mut self) -> Option<anyhow::Result<Batch>> {
        if let Ok(item) = self.rx.recv() {
            return Some(item);
        }
        // The thread has ended: the stream is over, or it panicked.
        let handle = self.handle.take()?;
        match handle.join() {
            Ok(()) => None,
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "no message".into());
                Some(Err(anyhow!("the loader thread panicked: {message}")))
            }
        }
    }
}
