//! Loss curves: the total loss and its parts in one panel, the unweighted auxiliary terms in
//! another.

use std::path::Path;

use limoe_core::logs::metrics::{
    AUX, CLASSIFICATION, CONTRASTIVE, GLOBAL_ENTROPY_IMAGE, GLOBAL_ENTROPY_TEXT, IMPORTANCE_IMAGE,
    IMPORTANCE_TEXT, LOAD_IMAGE, LOAD_TEXT, LOCAL_ENTROPY_IMAGE, LOCAL_ENTROPY_TEXT, LOSS, STEP,
    Z_LOSS_IMAGE, Z_LOSS_TEXT,
};
use polars::prelude::DataFrame;

use super::{Canvas, LineFigure, LinePanel, Series, floats, palette, points, render_lines};
use crate::Result;
use crate::columns::optional_floats;

/// The metrics columns drawn as loss curves: the total, its parts (the objective, contrastive
/// or a classifier's label loss, and the weighted auxiliary sum; the first four, drawn in one
/// panel) and the unweighted auxiliary losses (the rest, drawn in a second panel).
pub const LOSS_TERMS: [&str; 14] = [
    LOSS,
    CONTRASTIVE,
    CLASSIFICATION,
    AUX,
    LOCAL_ENTROPY_IMAGE,
    LOCAL_ENTROPY_TEXT,
    GLOBAL_ENTROPY_IMAGE,
    GLOBAL_ENTROPY_TEXT,
    IMPORTANCE_IMAGE,
    IMPORTANCE_TEXT,
    LOAD_IMAGE,
    LOAD_TEXT,
    Z_LOSS_IMAGE,
    Z_LOSS_TEXT,
];

/// How many of [`LOSS_TERMS`] go in the first panel.
const MAIN_TERMS: usize = 4;

/// The [`LOSS_TERMS`] that came after the first logs: drawn when the log has them.
const LATER_TERMS: [&str; 1] = [CLASSIFICATION];

/// Draws the [`LOSS_TERMS`] columns of a metrics frame against `step` in two panels: the
/// total, the objective (contrastive, or a classifier's label loss) and the weighted
/// auxiliary loss; and the unweighted auxiliary terms, on a
/// logarithmic y axis when all their values are positive (the router z-losses are orders of
/// magnitude above the others).
///
/// Columns that are all zero, null or NaN (terms whose weight is 0 are logged as 0, the
/// objective a model does not have as NaN) are left out, and so are null and non-finite
/// values; a panel with nothing left is not drawn. Every column but the [`LATER_TERMS`]
/// must exist. An empty frame, or one with nothing left to draw, is
/// [`AnalysisError::NoData`](crate::AnalysisError::NoData).
pub fn plot_losses(metrics: &DataFrame, path: &Path, canvas: Canvas) -> Result<()> {
    let steps = floats(metrics, STEP)?;
    let mut main = LinePanel::new("Total loss and its parts", "step", "loss");
    let mut aux = LinePanel::new(
        "Auxiliary losses (unweighted, summed over MoE blocks)",
        "step",
        "loss",
    );
    aux.log_y = true;
    for (i, name) in LOSS_TERMS.iter().enumerate() {
        let values = match LATER_TERMS.contains(name) {
            true => optional_floats(metrics, name)?,
            false => floats(metrics, name)?,
        };
        let points = points(&steps, &values);
        if points.iter().all(|p| p.1 == 0.0) {
            continue;
        }
        let panel = if i < MAIN_TERMS { &mut main } else { &mut aux };
        panel.series.push(Series::new(*name, palette(i), points));
    }
    let figure = LineFigure {
        title: "Loss terms vs step".into(),
        panels: vec![main, aux],
    };
    render_lines(figure, "the metrics log", path, canvas)
}
