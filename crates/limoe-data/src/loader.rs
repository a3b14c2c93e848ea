//! Streams the pairs of one split of a dataset directory: row group by row group, in a
//! seeded order per epoch, through a shuffle buffer. Rows with an empty caption or image
//! are skipped and counted.

use std::collections::VecDeque;
use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use arrow_array::{Array, BinaryArray, Int32Array, RecordBatch, StringArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::mix::SplitMix64;
use crate::schema::column;
use crate::shards::{INDEX, Index, Pair, ShardInfo};
use crate::split::Split;

/// How to stream a split.
#[derive(Clone, Copy, Debug)]
pub struct LoaderOptions {
    /// Which split.
    pub split: Split,
    /// Pairs held for shuffling; 0 streams in file order.
    pub shuffle_buffer: usize,
    /// Seed of the order.
    pub seed: u64,
    /// Epoch: each epoch has its own order.
    pub epoch: u64,
}

/// An iterator over the pairs of one split for one epoch.
pub struct Loader {
    dir: PathBuf,
    shards: Vec<ShardInfo>,
    /// (shard, row group) in reading order.
    units: Vec<(usize, usize)>,
    next_unit: usize,
    buffer: VecDeque<Pair>,
    capacity: usize,
    rng: SplitMix64,
    skipped: usize,
}

impl Loader {
    /// Opens the dataset written by `ingest` in `dir` (its `index.json` lists the shards).
    pub fn open(dir: &Path, options: LoaderOptions) -> anyhow::Result<Loader> {
        let index_path = dir.join(INDEX);
        let text = std::fs::read_to_string(&index_path).with_context(|| {
            format!(
                "cannot read {}; is this the output of an ingest stage?",
                index_path.display()
            )
        })?;
        let index: Index = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a dataset index", index_path.display()))?;
        let shards: Vec<ShardInfo> = index
            .shards
            .into_iter()
            .filter(|s| s.split == options.split)
            .collect();
        let mut units: Vec<(usize, usize)> = shards
            .iter()
            .enumerate()
            .flat_map(|(i, s)| (0..s.row_groups).map(move |g| (i, g)))
            .collect();
        let mut rng = SplitMix64(options.seed ^ options.epoch.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let shuffle = options.shuffle_buffer > 0;
        if shuffle {
            for i in (1..units.len()).rev() {
                units.swap(i, rng.below(i + 1));
            }
        }
        Ok(Loader {
            dir: dir.to_path_buf(),
            shards,
            units,
            next_unit: 0,
            buffer: VecDeque::new(),
            capacity: options.shuffle_buffer.max(1),
            rng,
            skipped: 0,
        })
    }

    /// Rows skipped so far (empty caption or image).
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// Reads the next row group into the buffer.
    fn fill(&mut self) -> anyhow::Result<()> {
        let (shard, group) = self.units[self.next_unit];
        self.next_unit += 1;
        let path = self.dir.join(&self.shards[shard].file);
        let read = || -> anyhow::Result<Vec<RecordBatch>> {
            let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&path)?)?
                .with_row_groups(vec![group])
                .build()?;
            Ok(reader.collect::<Result<Vec<_>, _>>()?)
        };
        let batches = read().with_context(|| {
            format!("cannot read row group {group} of shard {}; re-run the ingest stage (`--force ingest`)", path.display())
        })?;
        for batch in batches {
            for pair in pairs_of(&batch).with_context(|| format!("shard {}", path.display()))? {
                if pair.caption.trim().is_empty() || pair.image.is_empty() {
                    self.skipped += 1;
                } else {
                    self.buffer.push_back(pair);
                }
            }
        }
        Ok(())
    }
}

impl Iterator for Loader {
    type Item = anyhow::Result<Pair>;

    fn next(&mut self) -> Option<anyhow::Result<Pair>> {
        while self.buffer.len() < self.capacity && self.next_unit < self.units.len() {
            if let Err(e) = self.fill() {
                self.next_unit = self.units.len();
                return Some(Err(e));
            }
        }
        let pair = if self.capacity > 1 {
            let pick = self.rng.below(self.buffer.len().max(1));
            self.buffer.swap_remove_back(pick)
        } else {
            self.buffer.pop_front()
        };
        pair.map(Ok)
    }
}

/// The rows of a canonical batch as pairs; a missing or mistyped column is an error.
fn pairs_of(batch: &RecordBatch) -> anyhow::Result<Vec<Pair>> {
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
