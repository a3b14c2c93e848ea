//! Loss curves: each loss term of the metrics log against the step.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use polars::prelude::DataFrame;

use super::{Canvas, Figure, floats, font, padded_range, render};
use crate::{AnalysisError, Result};

/// The metrics columns drawn as loss curves: the total, its two parts and the unweighted
/// auxiliary losses.
pub const LOSS_TERMS: [&str; 13] = [
    "loss",
    "contrastive",
    "aux",
    "local_entropy_image",
    "local_entropy_text",
    "global_entropy_image",
    "global_entropy_text",
    "importance_image",
    "importance_text",
    "load_image",
    "load_text",
    "z_loss_image",
    "z_loss_text",
];

/// One curve: its name and finite (step, value) points.
struct Curve {
    name: &'static str,
    points: Vec<(f64, f64)>,
}

struct Losses {
    curves: Vec<Curve>,
}

/// Draws every [`LOSS_TERMS`] column of a metrics frame against `step`, one line each;
/// null and non-finite values are left out.
pub fn plot_losses(metrics: &DataFrame, path: &Path, canvas: Canvas) -> Result<()> {
    if metrics.height() == 0 {
        return Err(AnalysisError::NoData {
            what: "the metrics log",
        });
    }
    let steps = floats(metrics, "step")?;
    let mut curves = Vec::with_capacity(LOSS_TERMS.len());
    for name in LOSS_TERMS {
        let values = floats(metrics, name)?;
        let points = steps
            .iter()
            .zip(values)
            .filter_map(|(&s, v)| Some((s?, v?)))
            .filter(|(s, v)| s.is_finite() && v.is_finite())
            .collect();
        curves.push(Curve { name, points });
    }
    render(&Losses { curves }, path, canvas)
}

impl Figure for Losses {
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String> {
        let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
        root.fill(&WHITE).map_err(e)?;
        let points = || self.curves.iter().flat_map(|c| c.points.iter());
        let mut chart = ChartBuilder::on(root)
            .caption("Loss terms vs step", font(20))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(
                padded_range(points().map(|p| p.0)),
                padded_range(points().map(|p| p.1)),
            )
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc("loss (auxiliary terms unweighted)")
            .label_style(font(12))
            .axis_desc_style(font(13))
            .draw()
            .map_err(e)?;
        for (i, curve) in self.curves.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(std::iter::once(PathElement::new(
                    curve.points.clone(),
                    color.stroke_width(2),
                )))
                .map_err(e)?
                .label(curve.name)
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font(font(11))
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(e)?;
        Ok(())
    }
}
