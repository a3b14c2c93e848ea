//! Router entropies and dropped-token rates against the step, per modality.

use std::collections::BTreeMap;
use std::path::Path;

use limoe_core::logs::routing::{BLOCK, GLOBAL_ENTROPY, LOCAL_ENTROPY, MODALITY, STEP};
use polars::prelude::DataFrame;

use super::{
    Canvas, LineFigure, LinePanel, Series, floats, modality_colour, points, render_lines, strings,
};
use crate::routing::modality_stats;
use crate::{AnalysisError, Result};

/// The columns of [`modality_stats`] drawn, each in its own panel: (column, caption, y axis).
const PANELS: [(&str, &str, &str); 3] = [
    (
        LOCAL_ENTROPY,
        "Local router entropy",
        "mean entropy of p(expert|token)",
    ),
    (
        GLOBAL_ENTROPY,
        "Global router entropy",
        "entropy of the mean gate",
    ),
    (
        "dropped_rate",
        "Dropped-token rate",
        "dropped / routed assignments",
    ),
];

/// Draws, from a routing log, three panels against the step for the split `split`: the
/// local router entropy, the global router entropy and the dropped-token rate (the numbers
/// of [`modality_stats`]).
///
/// Each modality has one bold line, the mean over MoE blocks (in the legend), and one faint
/// line of its colour per MoE block. A split without rows is
/// [`AnalysisError::NoData`].
pub fn plot_routing_curves(
    routing: &DataFrame,
    split: &str,
    path: &Path,
    canvas: Canvas,
) -> Result<()> {
    let stats = modality_stats(routing, split)?;
    if stats.height() == 0 {
        return Err(AnalysisError::NoData {
            what: "the routing log's split",
        });
    }
    let steps = floats(&stats, STEP)?;
    let blocks = floats(&stats, BLOCK)?;
    let modalities = strings(&stats, MODALITY)?;
    let mut figure = LineFigure {
        title: format!("Router entropy and dropped tokens vs step (split {split})"),
        panels: Vec::new(),
    };
    for (column, caption, y_desc) in PANELS {
        let values = floats(&stats, column)?;
        // (modality, block) -> points, and modality -> step -> (sum, count) over blocks.
        let mut lines: BTreeMap<(&str, i64), Vec<(f64, f64)>> = BTreeMap::new();
        let mut sums: BTreeMap<&str, BTreeMap<i64, (f64, f64)>> = BTreeMap::new();
        for i in 0..stats.height() {
            let (Some(modality), Some(block)) = (modalities[i].as_deref(), blocks[i]) else {
                continue;
            };
            for (step, v) in points(&steps[i..=i], &values[i..=i]) {
                lines
                    .entry((modality, block as i64))
                    .or_default()
                    .push((step, v));
                let sum = sums
                    .entry(modality)
                    .or_default()
                    .entry(step as i64)
                    .or_default();
                *sum = (sum.0 + v, sum.1 + 1.0);
            }
        }
        let mut panel = LinePanel::new(caption, "step", y_desc);
        for ((modality, block), points) in lines {
            panel.series.push(Series {
                faint: true,
                ..Series::new(
                    format!("{modality} block {block}"),
                    modality_colour(modality),
                    points,
                )
            });
        }
        for (modality, by_step) in sums {
            let mean = by_step
                .iter()
                .map(|(&s, &(v, n))| (s as f64, v / n))
                .collect();
            let name = format!("{modality} (mean over blocks)");
            panel
                .series
                .push(Series::new(name, modality_colour(modality), mean));
        }
        figure.panels.push(panel);
    }
    render_lines(figure, "the routing log's split", path, canvas)
}
