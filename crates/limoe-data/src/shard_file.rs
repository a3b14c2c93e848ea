//! One Parquet file in the canonical shard schema (crates/limoe-data/src/schema.rs) read
//! row by row in file order, in batches, whether or not a dataset's `index.json` lists it.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::Context;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};

use crate::loader::pairs_of;
use crate::shards::Pair;

/// The rows of a shard file in batches of a fixed size (the last may be smaller).
pub struct ShardFile {
    path: PathBuf,
    rows: usize,
    reader: ParquetRecordBatchReader,
}

impl ShardFile {
    /// Opens `path` to read `batch_rows` (at least 1) rows at a time; a file that is missing
    /// or not Parquet is an error naming it.
    pub fn open(path: &Path, batch_rows: usize) -> anyhow::Result<ShardFile> {
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .with_context(|| format!("{} is not a Parquet file", path.display()))?;
        let rows = builder.metadata().file_metadata().num_rows().max(0) as usize;
        let reader = (builder.with_batch_size(batch_rows.max(1)).build())
            .with_context(|| format!("cannot read {}", path.display()))?;
        Ok(ShardFile {
            path: path.to_owned(),
            rows,
            reader,
        })
    }

    /// Rows in the file, as its footer records them.
    pub fn rows(&self) -> usize {
        self.rows
    }
}

impl Iterator for ShardFile {
    type Item = anyhow::Result<Vec<Pair>>;

    fn next(&mut self) -> Option<anyhow::Result<Vec<Pair>>> {
        let batch = self.reader.next()?;
        let path = &self.path;
        Some(
            batch
                .with_context(|| format!("cannot read {}", path.display()))
                .and_then(|b| pairs_of(&b).with_context(|| format!("{}", path.display()))),
        )
    }
}
