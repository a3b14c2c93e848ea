//! Writing canonical Parquet shards (zstd, fixed-size row groups, size-capped files) and
//! the dataset's `index.json`.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use arrow_array::{ArrayRef, BinaryArray, Int32Array, RecordBatch, StringArray};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};

use limoe_core::files::{hash_file, write_atomic};
use limoe_core::spec::Splits;

use crate::schema::shard_schema;
use crate::split::Split;

/// The index file of a dataset directory.
pub const INDEX: &str = "index.json";

/// One image-text pair in canonical form.
#[derive(Clone, Debug, PartialEq)]
pub struct Pair {
    /// Unique key.
    pub key: String,
    /// PNG or JPEG bytes.
    pub image: Vec<u8>,
    /// Caption.
    pub caption: String,
    /// Class label, when the source has classes.
    pub label: Option<i32>,
    /// Class name, when the source has classes.
    pub label_name: Option<String>,
    /// Source name.
    pub source: String,
}

/// How shards are cut.
#[derive(Clone, Copy, Debug)]
pub struct ShardLayout {
    /// Rows per row group.
    pub row_group_rows: usize,
    /// A shard is closed once it holds at least this many bytes.
    pub max_bytes: u64,
}

/// One written shard.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ShardInfo {
    /// File name inside the dataset directory.
    pub file: String,
    /// Split of every row in it.
    pub split: Split,
    /// Rows.
    pub rows: usize,
    /// Row groups (the unit of streaming and shuffling).
    pub row_groups: usize,
    /// Size in bytes.
    pub bytes: u64,
    /// Hex SHA-256 of the file.
    pub sha256: String,
}

/// `index.json`: what a dataset directory holds.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Index {
    /// Column names and types, in order.
    pub schema: Vec<(String, String)>,
    /// Rows per split.
    pub rows: BTreeMap<Split, usize>,
    /// Rows per source.
    pub sources: BTreeMap<String, usize>,
    /// Every shard.
    pub shards: Vec<ShardInfo>,
    /// Items the importers skipped, per source and reason (absent in older indexes).
    #[serde(default)]
    pub skipped: BTreeMap<String, BTreeMap<String, usize>>,
    /// The name of every class label in any split, per source: the candidate classes of
    /// zero-shot classification, whichever of them a split holds (absent in older indexes).
    #[serde(default)]
    pub classes: BTreeMap<String, BTreeMap<i32, String>>,
}

impl Index {
    /// Reads the `index.json` of the dataset written in `dir`.
    pub fn read(dir: &Path) -> anyhow::Result<Index> {
        let path = dir.join(INDEX);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read {}; is this the output of an ingest stage?",
                path.display()
            )
        })?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not a dataset index", path.display()))
    }
}

/// Writes the shards of one split.
struct SplitWriter {
    split: Split,
    pending: Vec<Pair>,
    open: Option<(ArrowWriter<File>, String, usize)>,
    done: Vec<ShardInfo>,
}

/// Writes pairs into per-split shards under one directory, then `index.json`.
pub struct DatasetWriter {
    dir: PathBuf,
    layout: ShardLayout,
    fractions: Splits,
    splits: Vec<SplitWriter>,
    sources: BTreeMap<String, usize>,
    skipped: BTreeMap<String, BTreeMap<String, usize>>,
    /// Per source and label: its name and the key of the first pair that gave it.
    classes: BTreeMap<String, BTreeMap<i32, (String, String)>>,
}

impl DatasetWriter {
    /// A writer into `dir` (created if missing).
    pub fn new(dir: &Path, layout: ShardLayout, fractions: Splits) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(DatasetWriter {
            dir: dir.to_path_buf(),
            layout,
            fractions,
            splits: Split::ALL
                .iter()
                .map(|&split| SplitWriter {
                    split,
                    pending: Vec::new(),
                    open: None,
                    done: Vec::new(),
                })
                .collect(),
            sources: BTreeMap::new(),
            skipped: BTreeMap::new(),
            classes: BTreeMap::new(),
        })
    }

    /// Records `count` items of `source` skipped for `reason` (listed in `index.json`).
    pub fn skipped(&mut self, source: &str, reason: &str, count: usize) {
        *self
            .skipped
            .entry(source.to_owned())
            .or_default()
            .entry(reason.to_owned())
            .or_default() += count;
    }

    /// Adds one pair to the split its key hashes to. Errors when its class name differs from
    /// the one an earlier pair of the source gave the same label, naming both pairs.
    pub fn add(&mut self, pair: Pair) -> anyhow::Result<()> {
        if let (Some(label), Some(name)) = (pair.label, &pair.label_name) {
            let classes = self.classes.entry(pair.source.clone()).or_default();
            let (first_name, first_key) = classes
                .entry(label)
                .or_insert_with(|| (name.clone(), pair.key.clone()));
            if first_name != name {
                anyhow::bail!(
                    "{}: label {label} is named `{first_name}` by pair `{first_key}` but \
                     `{name}` by pair `{}`; one label id must have one class name",
                    pair.source,
                    pair.key
                );
            }
        }
        *self.sources.entry(pair.source.clone()).or_default() += 1;
        let split = Split::of_key(&pair.key, &self.fractions);
        let writer = &mut self.splits[split as usize];
        writer.pending.push(pair);
        if writer.pending.len() >= self.layout.row_group_rows {
            writer.write_group(&self.dir, self.layout)?;
        }
        Ok(())
    }

    /// Writes what is pending, closes every shard and writes `index.json` (atomically).
    pub fn finish(mut self) -> anyhow::Result<Index> {
        let mut shards = Vec::new();
        let mut rows = BTreeMap::new();
        for writer in &mut self.splits {
            if !writer.pending.is_empty() {
                writer.write_group(&self.dir, self.layout)?;
            }
            writer.close_shard(&self.dir)?;
            rows.insert(writer.split, writer.done.iter().map(|s| s.rows).sum());
            shards.append(&mut writer.done);
        }
        let schema = shard_schema()
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().to_string()))
            .collect();
        let index = Index {
            schema,
            rows,
            sources: self.sources,
            shards,
            skipped: self.skipped,
            classes: (self.classes.into_iter())
                .map(|(source, labels)| {
                    let names = labels.into_iter().map(|(l, (name, _))| (l, name));
                    (source, names.collect())
                })
                .collect(),
        };
        write_atomic(
            &self.dir.join(INDEX),
            serde_json::to_string_pretty(&index)?.as_bytes(),
        )?;
        Ok(index)
    }
}

impl SplitWriter {
    /// Writes the pending pairs as one row group, opening a shard if none is open and
    /// closing it once it reaches the size cap.
    fn write_group(&mut self, dir: &Path, layout: ShardLayout) -> anyhow::Result<()> {
        let batch = to_batch(&self.pending)?;
        let rows = self.pending.len();
        self.pending.clear();
        if self.open.is_none() {
            let name = format!("{}-{:05}.parquet", self.split.name(), self.done.len());
            let file = File::create(dir.join(&name))
                .with_context(|| format!("cannot create {}", dir.join(&name).display()))?;
            let props = WriterProperties::builder()
                .set_compression(Compression::ZSTD(ZstdLevel::default()))
                .set_max_row_group_row_count(Some(layout.row_group_rows))
                .build();
            let writer = ArrowWriter::try_new(file, shard_schema(), Some(props))?;
            self.open = Some((writer, name, 0));
        }
        if let Some((writer, _, written)) = &mut self.open {
            writer.write(&batch)?;
            writer.flush()?;
            *written += rows;
            if writer.bytes_written() as u64 >= layout.max_bytes {
                self.close_shard(dir)?;
            }
        }
        Ok(())
    }

    fn close_shard(&mut self, dir: &Path) -> anyhow::Result<()> {
        let Some((writer, name, rows)) = self.open.take() else {
            return Ok(());
        };
        let row_groups = writer.flushed_row_groups().len();
        writer.close()?;
        let (bytes, sha256) = hash_file(&dir.join(&name))?;
        self.done.push(ShardInfo {
            file: name,
            split: self.split,
            rows,
            row_groups,
            bytes,
            sha256,
        });
        Ok(())
    }
}

fn to_batch(pairs: &[Pair]) -> anyhow::Result<RecordBatch> {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(pairs.iter().map(|p| &p.key))),
        Arc::new(BinaryArray::from_iter_values(
            pairs.iter().map(|p| &p.image),
        )),
        Arc::new(StringArray::from_iter_values(
            pairs.iter().map(|p| &p.caption),
        )),
        Arc::new(Int32Array::from_iter(pairs.iter().map(|p| p.label))),
        Arc::new(StringArray::from_iter(
            pairs.iter().map(|p| p.label_name.as_deref()),
        )),
        Arc::new(StringArray::from_iter_values(
            pairs.iter().map(|p| &p.source),
        )),
    ];
    Ok(RecordBatch::try_new(shard_schema(), columns)?)
}
