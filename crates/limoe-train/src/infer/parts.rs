//! Embeddings written to Parquet in parts, so that a killed `limoe embed` resumes: each
//! batch's rows go to `OUT.parts/part-NNNNNN.parquet`, written whole or not at all; a rerun
//! of the same command skips the parts that are there, and once every part is written they
//! are joined into `OUT` (atomically) and the parts directory is removed.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use arrow_array::{Array, ArrayRef, FixedSizeListArray, Float32Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use limoe_core::files::write_atomic;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

/// The column of each row's key: an image's file name, a shard row's key, a text's line.
pub const KEY: &str = "key";
/// The column of each embedded text (texts only).
pub const TEXT: &str = "text";
/// The column of the unit embeddings (a fixed-size list of f32).
pub const EMBEDDING: &str = "embedding";

/// The file in the parts directory that records which command its parts belong to.
const STAMP: &str = "command.json";

/// The rows of one part.
pub struct Rows {
    /// Their keys.
    pub keys: Vec<String>,
    /// Their texts, when texts were embedded.
    pub texts: Option<Vec<String>>,
    /// Their unit embeddings, `[rows, dim]` row-major.
    pub embeddings: Vec<f32>,
}

/// The parts of one output file.
pub struct Parts {
    dir: PathBuf,
    output: PathBuf,
    dim: usize,
}

impl Parts {
    /// The parts of `output`, of embeddings of size `dim`, made by the command `stamp`
    /// describes (checkpoint, input, batch size): a parts directory that another command left
    /// is an error, as its parts would not be this command's rows.
    pub fn open(output: &Path, dim: usize, stamp: &serde_json::Value) -> anyhow::Result<Parts> {
        let mut name = output.as_os_str().to_owned();
        name.push(".parts");
        let dir = PathBuf::from(name);
        let stamp_file = dir.join(STAMP);
        let wanted = serde_json::to_string_pretty(stamp)?;
        match std::fs::read_to_string(&stamp_file) {
            Ok(found) if found == wanted => {}
            Ok(found) => bail!(
                "{} holds the parts of another command ({found}); rerun that command to \
                 finish it, or remove the directory",
                dir.display()
            ),
            Err(_) => write_atomic(&stamp_file, wanted.as_bytes())?,
        }
        Ok(Parts {
            dir,
            output: output.to_owned(),
            dim,
        })
    }

    /// The file of part `index`.
    fn part(&self, index: usize) -> PathBuf {
        self.dir.join(format!("part-{index:06}.parquet"))
    }

    /// Whether part `index` was written by an earlier run.
    pub fn done(&self, index: usize) -> bool {
        self.part(index).is_file()
    }

    /// Writes part `index`.
    pub fn write(&self, index: usize, rows: &Rows) -> anyhow::Result<()> {
        let path = self.part(index);
        let bytes = encode(&[self.batch(rows)?]).with_context(|| path.display().to_string())?;
        write_atomic(&path, &bytes)
    }

    /// Joins parts `0..count` into the output, removes the parts and returns the rows written.
    pub fn finish(self, count: usize) -> anyhow::Result<usize> {
        let mut batches = Vec::new();
        for index in 0..count {
            let path = self.part(index);
            let read = || -> anyhow::Result<Vec<RecordBatch>> {
                let reader =
                    ParquetRecordBatchReaderBuilder::try_new(File::open(&path)?)?.build()?;
                Ok(reader.collect::<Result<Vec<_>, _>>()?)
            };
            batches.extend(read().with_context(|| {
                format!(
                    "cannot read the part {}; remove it and rerun",
                    path.display()
                )
            })?);
        }
        let rows = batches.iter().map(RecordBatch::num_rows).sum();
        let bytes = encode(&batches).with_context(|| self.output.display().to_string())?;
        write_atomic(&self.output, &bytes)?;
        std::fs::remove_dir_all(&self.dir)
            .with_context(|| format!("cannot remove {}", self.dir.display()))?;
        Ok(rows)
    }

    /// `rows` as an Arrow batch: key, text (when there are texts), embedding.
    fn batch(&self, rows: &Rows) -> anyhow::Result<RecordBatch> {
        let item = Arc::new(Field::new("item", DataType::Float32, false));
        let values = Arc::new(Float32Array::from(rows.embeddings.clone()));
        let embeddings = FixedSizeListArray::try_new(item, self.dim as i32, values, None)?;
        let mut fields = vec![Field::new(KEY, DataType::Utf8, false)];
        let mut columns: Vec<ArrayRef> = vec![Arc::new(StringArray::from(rows.keys.clone()))];
        if let Some(texts) = &rows.texts {
            fields.push(Field::new(TEXT, DataType::Utf8, false));
            columns.push(Arc::new(StringArray::from(texts.clone())));
        }
        fields.push(Field::new(EMBEDDING, embeddings.data_type().clone(), false));
        columns.push(Arc::new(embeddings));
        Ok(RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns,
        )?)
    }
}

/// `batches` (at least one, of one schema) as one zstd Parquet file.
fn encode(batches: &[RecordBatch]) -> anyhow::Result<Vec<u8>> {
    let Some(first) = batches.first() else {
        bail!("no rows to write");
    };
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let mut writer = ArrowWriter::try_new(Vec::new(), first.schema(), Some(props))?;
    for batch in batches {
        writer.write(batch)?;
    }
    Ok(writer.into_inner()?)
}
