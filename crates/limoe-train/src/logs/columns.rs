//! Mapping the core log schemas to Arrow, and typed access to a batch's columns.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use arrow_array::{
    Array, ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
};
use arrow_schema::{DataType, Field, Schema};
use limoe_core::logs::{ColumnType, LogSchema};

/// The Arrow type a log column is written as.
pub fn arrow_type(ty: ColumnType) -> DataType {
    match ty {
        ColumnType::Int32 => DataType::Int32,
        ColumnType::Int64 => DataType::Int64,
        ColumnType::Float64 => DataType::Float64,
        ColumnType::Utf8 => DataType::Utf8,
    }
}

/// The Arrow schema a log's part files are written with.
pub fn arrow_schema(log: &LogSchema) -> Schema {
    Schema::new(
        log.columns
            .iter()
            .map(|c| Field::new(c.name, arrow_type(c.ty), c.nullable))
            .collect::<Vec<_>>(),
    )
}

/// Assembles named columns into a batch in the log's column order; every column of the
/// schema must be given exactly once.
pub(crate) fn build_batch(
    log: &LogSchema,
    mut named: Vec<(&str, ArrayRef)>,
) -> anyhow::Result<RecordBatch> {
    let mut columns = Vec::with_capacity(log.columns.len());
    for column in log.columns {
        let i = named
            .iter()
            .position(|(name, _)| *name == column.name)
            .with_context(|| {
                format!("log `{}`: no values for column `{}`", log.name, column.name)
            })?;
        columns.push(named.swap_remove(i).1);
    }
    if let Some((name, _)) = named.first() {
        bail!("log `{}` has no column `{name}`", log.name);
    }
    RecordBatch::try_new(Arc::new(arrow_schema(log)), columns)
        .with_context(|| format!("cannot build a batch of log `{}`", log.name))
}

/// The columns of one batch read from `file`, checked against the log's schema.
pub(crate) struct Columns<'a> {
    batch: &'a RecordBatch,
    log: &'a LogSchema,
    file: &'a Path,
}

impl<'a> Columns<'a> {
    pub(crate) fn new(batch: &'a RecordBatch, log: &'a LogSchema, file: &'a Path) -> Self {
        Columns { batch, log, file }
    }

    /// The file the batch came from, for error messages.
    pub(crate) fn file(&self) -> &Path {
        self.file
    }

    /// Column `name` as `A`, checking presence, type and (for non-nullable columns) nulls.
    fn get<A: Array + 'static>(&self, name: &str) -> anyhow::Result<&'a A> {
        let file = self.file.display();
        let column = self
            .log
            .column(name)
            .with_context(|| format!("log `{}` has no column `{name}`", self.log.name))?;
        let array = self
            .batch
            .column_by_name(name)
            .with_context(|| format!("{file}: no column `{name}` (log `{}`)", self.log.name))?;
        let expected = arrow_type(column.ty);
        if array.data_type() != &expected {
            bail!(
                "{file}: column `{name}` is {}, expected {expected}",
                array.data_type()
            );
        }
        if !column.nullable && array.null_count() > 0 {
            bail!("{file}: column `{name}` holds nulls");
        }
        array
            .as_any()
            .downcast_ref::<A>()
            .with_context(|| format!("{file}: column `{name}` has an unexpected layout"))
    }

    /// An Int64 column.
    pub(crate) fn i64(&self, name: &str) -> anyhow::Result<&'a Int64Array> {
        self.get(name)
    }

    /// An Int32 column.
    pub(crate) fn i32(&self, name: &str) -> anyhow::Result<&'a Int32Array> {
        self.get(name)
    }

    /// A Float64 column.
    pub(crate) fn f64(&self, name: &str) -> anyhow::Result<&'a Float64Array> {
        self.get(name)
    }

    /// A Utf8 column.
    pub(crate) fn utf8(&self, name: &str) -> anyhow::Result<&'a StringArray> {
        self.get(name)
    }
}
