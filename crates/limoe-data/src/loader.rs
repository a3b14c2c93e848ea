//! Streams the pairs of one split of a dataset directory: row group by row group, in a
//! seeded order per epoch, through a shuffle buffer. Rows with an empty caption or image
//! are skipped and counted. One pass (`Mode::Epoch`) or endless (`Mode::Resampled`, each
//! epoch in its own order), and exactly resumable from a saved [`Position`].

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use arrow_array::{Array, BinaryArray, Int32Array, RecordBatch, StringArray};
use limoe_core::random::{GOLDEN_GAMMA, SplitMix64, mix64};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};

use crate::schema::column;
use crate::shard_check;
use crate::shards::{Index, Pair, ShardInfo};
use crate::split::Split;

/// How to stream a split.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoaderOptions {
    /// Which split.
    pub split: Split,
    /// Pairs held for shuffling; 0 streams in file order.
    pub shuffle_buffer: usize,
    /// Seed of the order.
    pub seed: u64,
    /// Epoch: each epoch has its own order. The first epoch streamed.
    pub epoch: u64,
}

impl LoaderOptions {
    /// Every pair of `split` once, in file order (no shuffling): what evaluation and
    /// sampling read.
    pub fn in_file_order(split: Split) -> LoaderOptions {
        LoaderOptions {
            split,
            shuffle_buffer: 0,
            seed: 0,
            epoch: 0,
        }
    }
}

/// How many passes over the split a loader makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// One pass: every usable row once, then the end.
    Epoch,
    /// Endless: when an epoch's row groups run out the next epoch starts, in its own order;
    /// the shuffle buffer carries rows across the boundary.
    Resampled,
}

/// A row of the split: shard (index among the split's shards in `index.json` order), row
/// group in the shard, and row in the row group (counting skipped rows too).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RowRef {
    /// Shard.
    pub shard: usize,
    /// Row group in the shard.
    pub group: usize,
    /// Row in the row group.
    pub row: usize,
}

/// What a loader has delivered and skipped so far (for manifests and logs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Pairs delivered.
    pub yielded: u64,
    /// Rows skipped for an empty (or all-blank) caption.
    pub empty_caption: u64,
    /// Rows skipped for empty image bytes.
    pub empty_image: u64,
    /// Rows skipped because their image could not be decoded (counted by the batcher).
    pub undecodable: u64,
}

impl Counters {
    /// Every skipped row.
    pub fn skipped(&self) -> u64 {
        self.empty_caption + self.empty_image + self.undecodable
    }
}

/// Everything needed to continue a loader exactly where it was: a loader resumed from it
/// yields the same pairs, in the same order, as the original would have from that point.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// The options the loader was opened with.
    pub options: LoaderOptions,
    /// Its mode.
    pub mode: Mode,
    /// Fingerprint of the split's shards (their SHA-256s); resuming on other data is an error.
    pub dataset: String,
    /// Epoch whose row-group order is being read.
    pub epoch: u64,
    /// Row groups of that order already read into the buffer; the next one to read is this
    /// index of the epoch's order (the order is recomputed from seed and epoch).
    pub next_unit: usize,
    /// State of the generator that picks rows out of the shuffle buffer.
    pub rng: u64,
    /// The rows in the shuffle buffer, in buffer order (re-read on resume).
    pub buffer: Vec<RowRef>,
    /// Delivered and skipped rows so far.
    pub counters: Counters,
}

/// An iterator over the pairs of one split: one epoch, or endless (see [`Mode`]).
pub struct Loader {
    dir: PathBuf,
    shards: Vec<ShardInfo>,
    options: LoaderOptions,
    mode: Mode,
    dataset: String,
    epoch: u64,
    /// (shard, row group) in this epoch's reading order.
    units: Vec<(usize, usize)>,
    next_unit: usize,
    buffer: VecDeque<(RowRef, Pair)>,
    capacity: usize,
    rng: SplitMix64,
    counters: Counters,
    /// Row groups read in a row that held no usable row (an endless loader over a split
    /// without usable rows stops with an error instead of spinning).
    barren: usize,
    failed: bool,
}

impl Loader {
    /// Opens the dataset written by `ingest` in `dir` (its `index.json` lists the shards) for
    /// one epoch.
    pub fn open(dir: &Path, options: LoaderOptions) -> anyhow::Result<Loader> {
        Loader::with_mode(dir, options, Mode::Epoch)
    }

    /// Opens the dataset in `dir` in `mode`, starting at epoch `options.epoch`.
    pub fn with_mode(dir: &Path, options: LoaderOptions, mode: Mode) -> anyhow::Result<Loader> {
        let index = Index::read(dir)?;
        let shards: Vec<ShardInfo> = index
            .shards
            .into_iter()
            .filter(|s| s.split == options.split)
            .collect();
        let dataset = fingerprint(&shards);
        let mut loader = Loader {
            dir: dir.to_path_buf(),
            shards,
            options,
            mode,
            dataset,
            epoch: options.epoch,
            units: Vec::new(),
            next_unit: 0,
            buffer: VecDeque::new(),
            capacity: options.shuffle_buffer.max(1),
            rng: SplitMix64::new(mix64(options.seed ^ 0x5bd1_e995) ^ options.epoch),
            counters: Counters::default(),
            barren: 0,
            failed: false,
        };
        loader.units = loader.order(options.epoch);
        Ok(loader)
    }

    /// Reopens the dataset in `dir` at `position` (saved by [`Loader::position`] on the same
    /// dataset): the buffered rows are read again, and the loader continues exactly as the
    /// saved one would have.
    pub fn resume(dir: &Path, position: &Position) -> anyhow::Result<Loader> {
        let mut loader = Loader::with_mode(dir, position.options, position.mode)?;
        if loader.dataset != position.dataset {
            bail!(
                "the saved loader position belongs to other data than {} (split `{}` \
                 fingerprint {} there, {} saved); resume on the dataset it was saved with",
                dir.display(),
                position.options.split.name(),
                loader.dataset,
                position.dataset
            );
        }
        loader.epoch = position.epoch;
        loader.units = loader.order(position.epoch);
        if position.next_unit > loader.units.len() {
            bail!(
                "the saved loader position reads row group {} of {} in its epoch; it does not \
                 belong to {}",
                position.next_unit,
                loader.units.len(),
                dir.display()
            );
        }
        loader.next_unit = position.next_unit;
        loader.rng = SplitMix64::new(position.rng);
        loader.counters = position.counters;
        let mut groups: BTreeMap<(usize, usize), Vec<Pair>> = BTreeMap::new();
        for r in &position.buffer {
            let rows = match groups.entry((r.shard, r.group)) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => {
                    if r.shard >= loader.shards.len()
                        || r.group >= loader.shards[r.shard].row_groups
                    {
                        bail!(
                            "the saved loader position holds row group {} of shard {}, which \
                             {} does not have",
                            r.group,
                            r.shard,
                            dir.display()
                        );
                    }
                    e.insert(loader.read_group(r.shard, r.group)?)
                }
            };
            let Some(pair) = rows.get(r.row) else {
                bail!(
                    "the saved loader position holds row {} of row group {} of {}, which has \
                     only {} rows",
                    r.row,
                    r.group,
                    loader.shards[r.shard].file,
                    rows.len()
                );
            };
            loader.buffer.push_back((*r, pair.clone()));
        }
        Ok(loader)
    }

    /// Where the loader stands: save it to resume later with [`Loader::resume`].
    pub fn position(&self) -> Position {
        Position {
            options: self.options,
            mode: self.mode,
            dataset: self.dataset.clone(),
            epoch: self.epoch,
            next_unit: self.next_unit,
            rng: self.rng.state(),
            buffer: self.buffer.iter().map(|(r, _)| *r).collect(),
            counters: self.counters,
        }
    }

    /// Delivered and skipped rows so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Rows skipped so far (empty caption or image, undecodable image).
    pub fn skipped(&self) -> u64 {
        self.counters.skipped()
    }

    /// Records that a delivered pair's image could not be decoded, so it counts as skipped
    /// rather than delivered (the batcher calls this).
    pub fn count_undecodable(&mut self) {
        self.counters.undecodable += 1;
        self.counters.yielded = self.counters.yielded.saturating_sub(1);
    }

    /// The epoch whose row groups are being read.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// (shard, row group) of the split in the reading order of `epoch`: file order without a
    /// shuffle buffer, otherwise a permutation drawn from the seed and the epoch.
    fn order(&self, epoch: u64) -> Vec<(usize, usize)> {
        let mut units: Vec<(usize, usize)> = self
            .shards
            .iter()
            .enumerate()
            .flat_map(|(i, s)| (0..s.row_groups).map(move |g| (i, g)))
            .collect();
        if self.options.shuffle_buffer > 0 {
            let mut rng = SplitMix64::new(self.options.seed ^ epoch.wrapping_mul(GOLDEN_GAMMA));
            for i in (1..units.len()).rev() {
                units.swap(i, rng.below_modulo(i + 1));
            }
        }
        units
    }

    /// Every row of one row group, skipped ones included (row `i` is index `i`), from a
    /// shard found intact ([`shard_check`]).
    fn read_group(&self, shard: usize, group: usize) -> anyhow::Result<Vec<Pair>> {
        shard_check::check_once(&self.dir, &self.shards[shard])?;
        let path = self.dir.join(&self.shards[shard].file);
        let read = || -> anyhow::Result<Vec<RecordBatch>> {
            let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&path)?)?
                .with_row_groups(vec![group])
                .build()?;
            Ok(reader.collect::<Result<Vec<_>, _>>()?)
        };
        let batches = read().with_context(|| {
            format!(
                "cannot read row group {group} of shard {}; re-run the ingest stage (`--force ingest`)",
                path.display()
            )
        })?;
        let mut rows = Vec::new();
        for batch in batches {
            rows.extend(pairs_of(&batch).with_context(|| format!("shard {}", path.display()))?);
        }
        Ok(rows)
    }

    /// Reads the next row group of the epoch into the buffer.
    fn fill(&mut self) -> anyhow::Result<()> {
        let (shard, group) = self.units[self.next_unit];
        self.next_unit += 1;
        let mut usable = 0;
        for (row, pair) in self.read_group(shard, group)?.into_iter().enumerate() {
            if pair.caption.trim().is_empty() {
                self.counters.empty_caption += 1;
            } else if pair.image.is_empty() {
                self.counters.empty_image += 1;
            } else {
                self.buffer.push_back((RowRef { shard, group, row }, pair));
                usable += 1;
            }
        }
        self.barren = if usable == 0 { self.barren + 1 } else { 0 };
        Ok(())
    }

    /// Starts the next epoch (resampled mode).
    fn roll_over(&mut self) -> anyhow::Result<()> {
        if self.units.is_empty() || self.barren >= self.units.len() {
            bail!(
                "split `{}` of {} has no usable rows (every row has an empty caption or \
                 image, or the split is empty); an endless loader cannot stream it",
                self.options.split.name(),
                self.dir.display()
            );
        }
        self.epoch += 1;
        self.units = self.order(self.epoch);
        self.next_unit = 0;
        Ok(())
    }
}

impl Iterator for Loader {
    type Item = anyhow::Result<Pair>;

    fn next(&mut self) -> Option<anyhow::Result<Pair>> {
        if self.failed {
            return None;
        }
        while self.buffer.len() < self.capacity {
            if self.next_unit == self.units.len() {
                if self.mode == Mode::Epoch {
                    break;
                }
                if let Err(e) = self.roll_over() {
                    if !self.buffer.is_empty() {
                        break;
                    }
                    self.failed = true;
                    return Some(Err(e));
                }
            }
            if let Err(e) = self.fill() {
                self.failed = true;
                return Some(Err(e));
            }
        }
        if self.buffer.is_empty() {
            return None;
        }
        let (_, pair) = if self.capacity > 1 {
            let pick = self.rng.below_modulo(self.buffer.len());
            self.buffer.swap_remove_back(pick)?
        } else {
            self.buffer.pop_front()?
        };
        self.counters.yielded += 1;
        Some(Ok(pair))
    }
}

/// A short hex fingerprint of shards (their SHA-256s, in order).
fn fingerprint(shards: &[ShardInfo]) -> String {
    let hash = shards
        .iter()
        .flat_map(|s| s.sha256.bytes().chain([b'\n']))
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    format!("{:016x}", mix64(hash))
}

/// The rows of a canonical batch as pairs; a missing or mistyped column is an error.
pub(crate) fn pairs_of(batch: &RecordBatch) -> anyhow::Result<Vec<Pair>> {
    fn col<'a, T: 'static>(
        batch: &'a RecordBatch,
        name: &str,
        kind: &str,
    ) -> anyhow::Result<&'a T> {
        let Some(array) = batch.column_by_name(name) else {
            bail!(
                "has no `{name}` column; canonical shards have key, image, caption, label, label_name, source"
            )
        };
        array
            .as_any()
            .downcast_ref::<T>()
            .with_context(|| format!("column `{name}` is not {kind}"))
    }
    let keys = col::<StringArray>(batch, column::KEY, "utf8")?;
    let images = col::<BinaryArray>(batch, column::IMAGE, "binary")?;
    let captions = col::<StringArray>(batch, column::CAPTION, "utf8")?;
    let labels = col::<Int32Array>(batch, column::LABEL, "int32")?;
    let names = col::<StringArray>(batch, column::LABEL_NAME, "utf8")?;
    let sources = col::<StringArray>(batch, column::SOURCE, "utf8")?;
    Ok((0..batch.num_rows())
        .map(|i| Pair {
            key: keys.value(i).to_owned(),
            image: images.value(i).to_vec(),
            caption: captions.value(i).to_owned(),
            label: (!labels.is_null(i)).then(|| labels.value(i)),
            label_name: (!names.is_null(i)).then(|| names.value(i).to_owned()),
            source: sources.value(i).to_owned(),
        })
        .collect())
}
