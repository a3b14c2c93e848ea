//! Reading a log's part files back into row structs.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use limoe_core::logs::{LogRow, part_files};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::batch::from_batch;

/// The part files of the log directory `log_dir` ([`part_files`]), in step order.
pub(super) fn parts_in(log_dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    part_files(log_dir)
        .with_context(|| format!("cannot list the log directory {}", log_dir.display()))
}

/// Every row of one part file, in file order.
pub fn read_part<R: LogRow>(path: &Path) -> anyhow::Result<Vec<R>> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|builder| builder.build())
        .with_context(|| format!("{} is not a readable Parquet file", path.display()))?;
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.with_context(|| format!("cannot read {}", path.display()))?;
        rows.extend(from_batch::<R>(&batch, path)?);
    }
    Ok(rows)
}

/// Every row of a log under the stage output `out_dir`, from all its parts, sorted by step
/// (rows of one step keep their order within and across parts, parts taken in step order).
pub fn read_log<R: LogRow>(out_dir: &Path) -> anyhow::Result<Vec<R>> {
    let dir = R::LOG.dir(out_dir);
    if !dir.is_dir() {
        bail!(
            "log `{}` not found: {} is not a directory",
            R::LOG.name,
            dir.display()
        );
    }
    let mut rows = Vec::new();
    for part in parts_in(&dir)? {
        rows.extend(read_part::<R>(&part)?);
    }
    rows.sort_by_key(R::step);
    Ok(rows)
}
