//! The core log schemas in Arrow: each log's Arrow schema, and its rows to and from record
//! batches through their [`ColumnData`].

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use arrow_array::{
    Array, ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
};
use arrow_schema::{DataType, Field, Schema};
use limoe_core::logs::{Column, ColumnData, ColumnType, LogRow, LogSchema};

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

/// `rows` as one batch with their log's Arrow schema.
pub(crate) fn to_batch<R: LogRow>(rows: &[R]) -> anyhow::Result<RecordBatch> {
    let arrays: Vec<ArrayRef> = R::to_columns(rows).into_iter().map(to_array).collect();
    RecordBatch::try_new(Arc::new(arrow_schema(R::LOG)), arrays)
        .with_context(|| format!("cannot build a batch of log `{}`", R::LOG.name))
}

/// The rows of a batch read from `file` (named in errors), its columns checked against the
/// log's schema.
pub(crate) fn from_batch<R: LogRow>(batch: &RecordBatch, file: &Path) -> anyhow::Result<Vec<R>> {
    let columns = (R::LOG.columns.iter())
        .map(|column| column_data(batch, R::LOG, column, file))
        .collect::<anyhow::Result<Vec<_>>>()?;
    R::from_columns(columns).map_err(|e| anyhow!("{}: {e:#}", file.display()))
}

fn to_array(column: ColumnData) -> ArrayRef {
    match column {
        ColumnData::Int32(values) => Arc::new(Int32Array::from(values)),
        ColumnData::NullableInt32(values) => Arc::new(Int32Array::from(values)),
        ColumnData::Int64(values) => Arc::new(Int64Array::from(values)),
        ColumnData::Float64(values) => Arc::new(Float64Array::from(values)),
        ColumnData::Utf8(values) => Arc::new(StringArray::from_iter_values(values)),
    }
}

/// The values of `column` in `batch`, checking presence, type and (for non-nullable
/// columns) nulls.
fn column_data(
    batch: &RecordBatch,
    log: &LogSchema,
    column: &Column,
    file: &Path,
) -> anyhow::Result<ColumnData<'static>> {
    let (file, name) = (file.display(), column.name);
    let array = batch
        .column_by_name(name)
        .with_context(|| format!("{file}: no column `{name}` (log `{}`)", log.name))?;
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
    let layout = || format!("{file}: column `{name}` has an unexpected layout");
    let any = array.as_any();
    Ok(match column.ty {
        ColumnType::Int32 => {
            let values = any.downcast_ref::<Int32Array>().with_context(layout)?;
            if column.nullable {
                ColumnData::NullableInt32(values.iter().collect())
            } else {
                ColumnData::Int32(values.values().to_vec())
            }
        }
        ColumnType::Int64 => {
            let values = any.downcast_ref::<Int64Array>().with_context(layout)?;
            ColumnData::Int64(values.values().to_vec())
        }
        ColumnType::Float64 => {
            let values = any.downcast_ref::<Float64Array>().with_context(layout)?;
            ColumnData::Float64(values.values().to_vec())
        }
        ColumnType::Utf8 => {
            let values = any.downcast_ref::<StringArray>().with_context(layout)?;
            let owned = (0..values.len()).map(|i| Cow::Owned(values.value(i).to_owned()));
            ColumnData::Utf8(owned.collect())
        }
    })
}
