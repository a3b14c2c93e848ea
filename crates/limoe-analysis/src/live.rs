//! The pictures a training run shows while it trains (TensorBoard image summaries), drawn
//! from log rows the trainer holds, before any of them is on disk.

use limoe_core::logs::{ColumnData, LogRow, RoutingRow};
use limoe_core::spec::ImageFormat;
use polars::prelude::*;

use crate::plot::{Canvas, plot_specialisation};
use crate::routing::image_shares;
use crate::{AnalysisError, Result};

/// The specialisation picture ([`plot_specialisation`]) of the `split` rows of `routing`,
/// as PNG bytes of `size` pixels.
pub fn specialisation_png(
    routing: &[RoutingRow],
    split: &str,
    size: (u32, u32),
) -> Result<Vec<u8>> {
    let shares = image_shares(&frame_of(routing)?, split)?;
    let dir = tempfile::tempdir().map_err(|source| AnalysisError::Io {
        path: std::env::temp_dir(),
        source,
    })?;
    let path = dir.path().join("specialisation.png");
    let canvas = Canvas {
        format: ImageFormat::Png,
        size,
    };
    plot_specialisation(&shares, &path, canvas)?;
    std::fs::read(&path).map_err(|source| AnalysisError::Io { path, source })
}

/// `rows` as a frame with their log's columns, as [`crate::read_log`] would load them.
pub fn frame_of<R: LogRow>(rows: &[R]) -> Result<DataFrame> {
    let columns = (R::LOG.columns.iter())
        .zip(R::to_columns(rows))
        .map(|(column, data)| {
            let name = PlSmallStr::from(column.name);
            let series = match data {
                ColumnData::Int32(v) => Series::new(name, v),
                ColumnData::NullableInt32(v) => Series::new(name, v),
                ColumnData::Int64(v) => Series::new(name, v),
                ColumnData::Float64(v) => Series::new(name, v),
                ColumnData::Utf8(v) => {
                    Series::new(name, v.iter().map(|s| s.as_ref()).collect::<Vec<&str>>())
                }
            };
            series.into()
        })
        .collect();
    DataFrame::new(rows.len(), columns).map_err(AnalysisError::polars(format!(
        "building the `{}` frame",
        R::LOG.name
    )))
}
