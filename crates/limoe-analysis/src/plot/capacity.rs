//! Accuracy against V-MoE's inference capacity: the same lines against the capacity factor
//! and against the GFLOPs per example that factor spends, so that a saving in compute is
//! read beside the accuracy it costs.

use std::path::Path;

use super::over_seeds::seed_chart;
use super::{Canvas, LineFigure, SeedLine, SeedPanel, render_lines};
use crate::Result;

/// One line of [`plot_capacity`]: one model's (or setting's) accuracy on one dataset with
/// BPR on or off.
pub struct CapacityLine {
    /// The legend entry.
    pub name: String,
    /// `(capacity factor, accuracy)` of every seed; several at one factor are seeds (none for
    /// a dense model, which is only a point on the GFLOPs panel).
    pub by_factor: Vec<(f64, f64)>,
    /// `(GFLOPs per example, accuracy)` of every seed, each at its factor's mean GFLOPs over
    /// the seeds so that the seeds of one factor meet.
    pub by_gflops: Vec<(f64, f64)>,
}

/// What [`plot_capacity`] draws.
pub struct CapacityFigure {
    /// The accuracy's axis, e.g. `top-1 (own classification head)`.
    pub y_desc: String,
    /// The lines.
    pub lines: Vec<CapacityLine>,
    /// Dashed horizontal levels, `(legend, accuracy)`: dense models, which have no capacity.
    pub references: Vec<(String, f64)>,
}

/// Draws `figure` at `path` in two panels, accuracy against the inference capacity factor
/// and against GFLOPs per example: each line the mean over its seeds (faint ± one sample
/// standard deviation where there are several), the references dashed across. A panel
/// without points is left out; a figure without any is
/// [`AnalysisError::NoData`](crate::AnalysisError::NoData).
pub fn plot_capacity(figure: &CapacityFigure, path: &Path, canvas: Canvas) -> Result<()> {
    let panel = |title: &str, x_desc: &str, points: fn(&CapacityLine) -> &Vec<(f64, f64)>| {
        let lines = (figure.lines.iter())
            .filter(|line| !points(line).is_empty())
            .map(|line| SeedLine {
                name: line.name.clone(),
                points: points(line).clone(),
            })
            .collect();
        seed_chart(&SeedPanel {
            title: title.to_owned(),
            x_desc: x_desc.to_owned(),
            y_desc: figure.y_desc.clone(),
            lines,
            references: figure.references.clone(),
        })
    };
    let figure = LineFigure {
        title: "Accuracy against inference capacity".into(),
        panels: vec![
            panel(
                "Accuracy vs inference capacity factor",
                "capacity factor (every MoE block)",
                |l| &l.by_factor,
            ),
            panel(
                "Accuracy vs GFLOPs per example",
                "GFLOPs per example (forward matmuls)",
                |l| &l.by_gflops,
            ),
        ],
    };
    render_lines(figure, "a capacity curve with a finite point", path, canvas)
}
