//! Buffered log writers: one new Parquet part per flush, written atomically, and truncation
//! of a log to a checkpoint's step for resume.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use limoe_core::files::write_atomic;
use limoe_core::logs::{LogRow, part_name, part_step};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use super::batch::{arrow_schema, to_batch};
use super::reader::{parts_in, read_part};

/// Buffers the rows of one log and writes them as a new part file per [`LogWriter::flush`].
///
/// Rows still buffered when the writer is dropped are lost: flush every log before (or
/// together with) writing a checkpoint, so that a resumed run finds every row up to it.
#[derive(Debug)]
pub struct LogWriter<R: LogRow> {
    dir: PathBuf,
    rows: Vec<R>,
}

impl<R: LogRow> LogWriter<R> {
    /// Starts the log under the stage output `out_dir` from nothing, removing any parts
    /// (and temporary files) an earlier attempt left there.
    pub fn create(out_dir: &Path) -> anyhow::Result<Self> {
        let dir = R::LOG.dir(out_dir);
        prepare_dir(&dir)?;
        for part in parts_in(&dir)? {
            remove(&part)?;
        }
        Ok(LogWriter {
            dir,
            rows: Vec::new(),
        })
    }

    /// Continues the log under `out_dir` after a checkpoint at `step`: rows recorded after
    /// `step` are removed (see [`truncate_after`]), so the log goes on as if never stopped.
    pub fn resume(out_dir: &Path, step: i64) -> anyhow::Result<Self> {
        let dir = R::LOG.dir(out_dir);
        prepare_dir(&dir)?;
        truncate_after::<R>(&dir, step)?;
        Ok(LogWriter {
            dir,
            rows: Vec::new(),
        })
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Buffers one row.
    pub fn push(&mut self, row: R) {
        self.rows.push(row);
    }

    /// Buffers several rows.
    pub fn extend(&mut self, rows: impl IntoIterator<Item = R>) {
        self.rows.extend(rows);
    }

    /// Rows buffered and not yet flushed.
    pub fn pending(&self) -> usize {
        self.rows.len()
    }

    /// Writes the buffered rows, sorted by step, as the part named after their first step
    /// and returns its path (`None` when nothing was buffered). A part of that name already
    /// there (an earlier flush that started at the same step) is rewritten with its rows
    /// followed by the new ones. On error the rows stay buffered.
    pub fn flush(&mut self) -> anyhow::Result<Option<PathBuf>> {
        let Some(first) = self.rows.iter().map(R::step).min() else {
            return Ok(None);
        };
        if first < 0 {
            bail!("log `{}`: negative step {first}", R::LOG.name);
        }
        let path = self.dir.join(part_name(first));
        let mut rows = if path.exists() {
            read_part::<R>(&path)?
        } else {
            Vec::new()
        };
        rows.extend(self.rows.iter().cloned());
        rows.sort_by_key(R::step);
        write_part(&path, &rows)?;
        self.rows.clear();
        Ok(Some(path))
    }
}

/// Removes every row recorded after `step` from the log directory `log_dir`: parts that
/// start after it are deleted, a part that straddles it is rewritten atomically with its
/// rows up to `step`; temporary files of interrupted writes are deleted too.
pub fn truncate_after<R: LogRow>(log_dir: &Path, step: i64) -> anyhow::Result<()> {
    remove_temporaries(log_dir)?;
    for part in parts_in(log_dir)? {
        if part_step(&part).is_some_and(|first| first > step) {
            remove(&part)?;
            continue;
        }
        let rows = read_part::<R>(&part)?;
        let kept: Vec<R> = rows.iter().filter(|r| r.step() <= step).cloned().collect();
        if kept.is_empty() {
            remove(&part)?;
        } else if kept.len() < rows.len() {
            write_part(&part, &kept)?;
        }
    }
    Ok(())
}

fn prepare_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    remove_temporaries(dir)
}

/// Deletes the hidden temporary files that interrupted atomic writes leave behind.
fn remove_temporaries(dir: &Path) -> anyhow::Result<()> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        if entry.file_name().to_string_lossy().starts_with(".tmp") && entry.path().is_file() {
            remove(&entry.path())?;
        }
    }
    Ok(())
}

fn remove(path: &Path) -> anyhow::Result<()> {
    std::fs::remove_file(path).with_context(|| format!("cannot remove {}", path.display()))
}

/// Writes `rows` as one zstd Parquet file at `path`, atomically.
fn write_part<R: LogRow>(path: &Path, rows: &[R]) -> anyhow::Result<()> {
    let batch = to_batch(rows)?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let encode = || -> parquet::errors::Result<Vec<u8>> {
        let mut writer =
            ArrowWriter::try_new(Vec::new(), Arc::new(arrow_schema(R::LOG)), Some(props))?;
        writer.write(&batch)?;
        writer.into_inner()
    };
    let bytes = encode().with_context(|| format!("cannot encode {}", path.display()))?;
    write_atomic(path, &bytes)
}
