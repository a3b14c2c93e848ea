//! The contrastive temperature and the learning rate against the step.

use std::path::Path;

use limoe_core::logs::metrics::{LOGIT_SCALE, LR, STEP};
use polars::prelude::DataFrame;

use super::{Canvas, IMAGE, LineFigure, LinePanel, Series, TEXT, floats, points, render_lines};
use crate::Result;

/// Draws two panels from a metrics frame: the contrastive temperature, 1 / `logit_scale`
/// (the log holds the scale itself, not its logarithm), and the learning rate `lr`, both
/// against `step`.
///
/// Null, non-finite and (for the temperature) non-positive values are left out; a panel
/// with nothing left is not drawn (a classifier logs no logit scale, only NaN), and a frame
/// with nothing to draw at all is
/// [`AnalysisError::NoData`](crate::AnalysisError::NoData).
pub fn plot_temperature(metrics: &DataFrame, path: &Path, canvas: Canvas) -> Result<()> {
    let steps = floats(metrics, STEP)?;
    let inverse: Vec<Option<f64>> = floats(metrics, LOGIT_SCALE)?
        .into_iter()
        .map(|s| s.filter(|&s| s > 0.0).map(|s| 1.0 / s))
        .collect();
    let mut temperature = LinePanel::new(
        "Contrastive temperature (1 / logit scale)",
        "step",
        "temperature",
    );
    let temperatures = points(&steps, &inverse);
    let title = match temperatures.is_empty() {
        true => "Learning rate vs step",
        false => "Temperature and learning rate vs step",
    };
    temperature
        .series
        .push(Series::new("temperature", IMAGE, temperatures));
    let mut lr = LinePanel::new("Learning rate", "step", "learning rate");
    lr.series.push(Series::new(
        "lr",
        TEXT,
        points(&steps, &floats(metrics, LR)?),
    ));
    let figure = LineFigure {
        title: title.into(),
        panels: vec![temperature, lr],
    };
    render_lines(figure, "the metrics log", path, canvas)
}
