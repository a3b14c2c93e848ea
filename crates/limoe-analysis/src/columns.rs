//! Reading a frame's columns as plain Rust values.

use polars::prelude::{DataFrame, DataType};

use crate::{AnalysisError, Result};

/// The column `name` of `frame` cast to `ty`.
fn cast(frame: &DataFrame, name: &str, ty: &DataType) -> Result<polars::prelude::Column> {
    frame
        .column(name)
        .and_then(|c| c.cast(ty))
        .map_err(AnalysisError::polars(format!("reading column `{name}`")))
}

/// The column `name` as floats (nulls as `None`).
pub(crate) fn floats(frame: &DataFrame, name: &str) -> Result<Vec<Option<f64>>> {
    let column = cast(frame, name, &DataType::Float64)?;
    let values = column
        .f64()
        .map_err(AnalysisError::polars(format!("reading column `{name}`")))?;
    Ok(values.iter().collect())
}

/// The column `name` as floats, all `None` when the frame lacks it (a column that came after
/// the first logs, which older runs' parts do not have).
pub(crate) fn optional_floats(frame: &DataFrame, name: &str) -> Result<Vec<Option<f64>>> {
    match frame.column(name) {
        Ok(_) => floats(frame, name),
        Err(_) => Ok(vec![None; frame.height()]),
    }
}

/// The column `name` as integers (nulls as `None`).
pub(crate) fn ints(frame: &DataFrame, name: &str) -> Result<Vec<Option<i64>>> {
    let column = cast(frame, name, &DataType::Int64)?;
    let values = column
        .i64()
        .map_err(AnalysisError::polars(format!("reading column `{name}`")))?;
    Ok(values.iter().collect())
}

/// The column `name` as strings (nulls as `None`).
pub(crate) fn strings(frame: &DataFrame, name: &str) -> Result<Vec<Option<String>>> {
    let column = cast(frame, name, &DataType::String)?;
    let values = column
        .str()
        .map_err(AnalysisError::polars(format!("reading column `{name}`")))?;
    Ok(values.iter().map(|v| v.map(str::to_owned)).collect())
}
