//! Per-class routing: per MoE block, a class x expert heatmap of image-token shares.

use std::collections::BTreeMap;
use std::path::Path;

use limoe_core::logs::assignments::{BLOCK, EXPERT, LABEL};
use polars::prelude::DataFrame;

use super::{Canvas, Heatmap, HeatmapFigure, distinct, floats, render};
use crate::assignments::class_shares;
use crate::{AnalysisError, Result};

/// Draws, from an assignments log, one heatmap per MoE block: x = expert, y = class, colour
/// = the share of the class's kept image-token assignments that go to the expert (each row
/// sums to 1; white 0 to dark blue 1; the numbers of [`class_shares`], so the log's last
/// step, labelled image tokens and experts `0..experts` only).
///
/// Classes are named `class_names[label]` when given and long enough, else by their label
/// number. A log without labelled image tokens is [`AnalysisError::NoData`].
pub fn plot_class_routing(
    assignments: &DataFrame,
    experts: usize,
    class_names: Option<&[String]>,
    path: &Path,
    canvas: Canvas,
) -> Result<()> {
    let shares = class_shares(assignments, experts)?;
    let [blocks, labels, expert_ids, values] =
        [BLOCK, LABEL, EXPERT, "share"].map(|c| floats(&shares, c));
    let (blocks, labels, expert_ids, values) = (blocks?, labels?, expert_ids?, values?);
    let mut by_block: BTreeMap<i64, Vec<(i64, i64, f64)>> = BTreeMap::new();
    for i in 0..shares.height() {
        if let (Some(b), Some(l), Some(e), Some(s)) =
            (blocks[i], labels[i], expert_ids[i], values[i])
        {
            by_block
                .entry(b as i64)
                .or_default()
                .push((l as i64, e as i64, s));
        }
    }
    if by_block.is_empty() {
        return Err(AnalysisError::NoData {
            what: "the assignments log's labelled image tokens",
        });
    }
    let classes = distinct(labels.iter().flatten().map(|&l| l as i64));
    let name = |label: i64| {
        usize::try_from(label)
            .ok()
            .and_then(|l| class_names?.get(l).cloned())
            .unwrap_or_else(|| label.to_string())
    };
    let row = |label: i64| classes.binary_search(&label).unwrap_or(0);
    let heatmaps = by_block
        .into_iter()
        .map(|(block, cells)| Heatmap {
            caption: format!("MoE block {block}"),
            x_desc: "expert".into(),
            y_desc: "class".into(),
            columns: (0..experts).map(|e| e.to_string()).collect(),
            rows: classes.iter().map(|&l| name(l)).collect(),
            cells: cells
                .into_iter()
                .map(|(l, e, share)| (e as usize, row(l), share))
                .collect(),
        })
        .collect();
    let title = "Routing of each class's image tokens (colour = share of the class, rows sum to 1)";
    let figure = HeatmapFigure {
        title: title.into(),
        heatmaps,
    };
    render(&figure, path, canvas)
}
