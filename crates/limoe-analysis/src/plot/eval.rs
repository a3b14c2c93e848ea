//! Evaluation curves: zero-shot accuracy, retrieval recall and few-shot accuracy against
//! the step.

use std::path::Path;

use limoe_core::logs::eval::{DATASET, METRIC, STEP, VALUE};
use polars::prelude::DataFrame;

use super::{Canvas, LineFigure, LinePanel, Series, floats, palette, render_lines, strings};
use crate::Result;

/// The panels of [`plot_eval`]: (caption, y axis, metric-name prefixes drawn in it). A
/// metric is drawn in the first panel one of whose prefixes it starts with (the names the
/// eval stage writes: `zero_shot_top1`, `retrieval_i2t_r1`, `few_shot_5`, ...).
pub const EVAL_PANELS: [(&str, &str, &[&str]); 3] = [
    (
        "Zero-shot classification",
        "accuracy",
        &["zero_shot_top1", "zero_shot_top5"],
    ),
    (
        "Image-text retrieval",
        "recall@1",
        &["retrieval_i2t_r1", "retrieval_t2i_r1"],
    ),
    ("Few-shot linear probe", "accuracy", &["few_shot_"]),
];

/// Draws an eval log (one stage's, or the train stage's periodic evaluations) as the
/// [`EVAL_PANELS`]: one line with dots per (dataset, metric) against `step`, in the order
/// of first appearance. Metrics of no panel (`chance_top1`, R@5, median rank, ...) are left
/// out, and so are panels without data. An eval log with none of the panels' metrics is
/// [`AnalysisError::NoData`](crate::AnalysisError::NoData).
pub fn plot_eval(eval: &DataFrame, path: &Path, canvas: Canvas) -> Result<()> {
    let steps = floats(eval, STEP)?;
    let values = floats(eval, VALUE)?;
    let (datasets, metrics) = (strings(eval, DATASET)?, strings(eval, METRIC)?);
    let mut panels: Vec<LinePanel> = EVAL_PANELS
        .iter()
        .map(|(caption, y_desc, _)| {
            let mut panel = LinePanel::new(*caption, "step", *y_desc);
            panel.markers = true;
            panel
        })
        .collect();
    let mut lines = 0;
    for i in 0..eval.height() {
        let (Some(step), Some(value), Some(dataset), Some(metric)) =
            (steps[i], values[i], &datasets[i], &metrics[i])
        else {
            continue;
        };
        if !(step.is_finite() && value.is_finite()) {
            continue;
        }
        let Some(panel) = EVAL_PANELS
            .iter()
            .position(|(_, _, prefixes)| prefixes.iter().any(|p| metric.starts_with(p)))
        else {
            continue;
        };
        let name = format!("{dataset} {metric}");
        let series = &mut panels[panel].series;
        match series.iter_mut().find(|s| s.name == name) {
            Some(s) => s.points.push((step, value)),
            None => {
                series.push(Series::new(name, palette(lines), vec![(step, value)]));
                lines += 1;
            }
        }
    }
    for panel in &mut panels {
        for series in &mut panel.series {
            series.points.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
    }
    let figure = LineFigure {
        title: "Evaluation metrics vs step".into(),
        panels,
    };
    render_lines(figure, "the eval log's plotted metrics", path, canvas)
}
