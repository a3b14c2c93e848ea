//! Per-class routing: per MoE block, a class x expert heatmap of image-token shares.

use std::collections::BTreeMap;
use std::path::Path;

use limoe_core::logs::assignments::{BLOCK, EXPERT, LABEL};
use polars::prelude::DataFrame;

use super::{Canvas, Heatmap, HeatmapFigure, floats, grid, render};
use crate::assignments::class_shares;
use crate::{AnalysisError, Result};

/// Classes drawn with a row each; with more, the most frequent `MAX_CLASSES - 1` keep theirs
/// and the rest share a row named `other`.
pub const MAX_CLASSES: usize = 30;

/// Pixels per class row, room for its 10-pixel label.
const ROW_PIXELS: u32 = 14;
/// Pixels of a heatmap besides its rows: caption, margins, expert labels.
const PANEL_PIXELS: u32 = 90;
/// Pixels of the figure's title.
const TITLE_PIXELS: u32 = 40;

/// Draws, from an assignments log, one heatmap per MoE block: x = expert, y = class, colour
/// = the share of the class's kept image-token assignments that go to the expert (each row
/// sums to 1; white 0 to dark blue 1; the numbers of [`class_shares`], so the log's last
/// step, labelled image tokens and experts `0..experts` only).
///
/// Every class is labelled, `class_names[label]` when given and long enough, else by its
/// label number; beyond [`MAX_CLASSES`], the least frequent are pooled into one `other` row.
/// The picture is the canvas's width and at least its height, taller when the rows need it.
/// A log without labelled image tokens is [`AnalysisError::NoData`].
pub fn plot_class_routing(
    assignments: &DataFrame,
    experts: usize,
    class_names: Option<&[String]>,
    path: &Path,
    canvas: Canvas,
) -> Result<()> {
    let shares = class_shares(assignments, experts)?;
    let [blocks, labels, expert_ids, tokens] =
        [BLOCK, LABEL, EXPERT, "tokens"].map(|c| floats(&shares, c));
    let (blocks, labels, expert_ids, tokens) = (blocks?, labels?, expert_ids?, tokens?);
    let cells: Vec<(i64, i64, usize, f64)> = (0..shares.height())
        .filter_map(|i| {
            let (b, l, e, t) = (blocks[i]?, labels[i]?, expert_ids[i]?, tokens[i]?);
            Some((b as i64, l as i64, e as usize, t))
        })
        .collect();
    if cells.is_empty() {
        return Err(AnalysisError::NoData {
            what: "the assignments log's labelled image tokens",
        });
    }
    let name = |label: i64| {
        usize::try_from(label)
            .ok()
            .and_then(|l| class_names?.get(l).cloned())
            .unwrap_or_else(|| label.to_string())
    };
    let (shown, pooled) = shown_classes(&cells);
    let mut rows: Vec<String> = shown.iter().map(|&l| name(l)).collect();
    if pooled > 0 {
        rows.push(format!("other ({pooled} classes)"));
    }
    let row = |label: i64| shown.binary_search(&label).unwrap_or(shown.len());
    let mut by_block: BTreeMap<i64, BTreeMap<(usize, usize), f64>> = BTreeMap::new();
    for &(block, label, expert, tokens) in &cells {
        *by_block
            .entry(block)
            .or_default()
            .entry((expert, row(label)))
            .or_default() += tokens;
    }
    let panels = by_block.len();
    let heatmaps = by_block
        .into_iter()
        .map(|(block, counts)| {
            let mut totals = vec![0.0; rows.len()];
            for (&(_, r), &t) in &counts {
                totals[r] += t;
            }
            Heatmap {
                caption: format!("MoE block {block}"),
                x_desc: "expert".into(),
                y_desc: "class".into(),
                columns: (0..experts).map(|e| e.to_string()).collect(),
                rows: rows.clone(),
                cells: counts
                    .into_iter()
                    .map(|((e, r), t)| (e, r, t / totals[r]))
                    .collect(),
            }
        })
        .collect();
    let title = "Routing of each class's image tokens (colour = share of the class, rows sum to 1)";
    let figure = HeatmapFigure {
        title: title.into(),
        heatmaps,
    };
    let needed =
        TITLE_PIXELS + grid(panels).0 as u32 * (rows.len() as u32 * ROW_PIXELS + PANEL_PIXELS);
    let canvas = Canvas {
        size: (canvas.size.0, canvas.size.1.max(needed)),
        ..canvas
    };
    render(&figure, path, canvas)
}

/// The labels drawn with a row of their own (sorted) and how many classes are pooled into
/// `other`: every class up to [`MAX_CLASSES`], else the most frequent by tokens over all
/// blocks (ties to the lower label).
fn shown_classes(cells: &[(i64, i64, usize, f64)]) -> (Vec<i64>, usize) {
    let mut counts: BTreeMap<i64, f64> = BTreeMap::new();
    for &(_, label, _, tokens) in cells {
        *counts.entry(label).or_default() += tokens;
    }
    let mut labels: Vec<(i64, f64)> = counts.into_iter().collect();
    if labels.len() <= MAX_CLASSES {
        return (labels.into_iter().map(|(l, _)| l).collect(), 0);
    }
    labels.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let pooled = labels.len() - (MAX_CLASSES - 1);
    let mut shown: Vec<i64> = labels[..MAX_CLASSES - 1].iter().map(|(l, _)| *l).collect();
    shown.sort_unstable();
    (shown, pooled)
}
