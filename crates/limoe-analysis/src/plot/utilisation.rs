//! Expert utilisation over training: per MoE block and modality, a heatmap of each
//! expert's share of the modality's tokens against the step.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use limoe_core::logs::routing::{BLOCK, EXPERT, MODALITY, STEP};
use polars::prelude::DataFrame;

use super::{Canvas, Heatmap, HeatmapFigure, distinct, floats, render, strings};
use crate::routing::{dead_experts, expert_shares};
use crate::{AnalysisError, Result};

/// Per (block, modality): the experts' shares by (step, expert).
type Shares = BTreeMap<(i64, String), Vec<(i64, i64, f64)>>;

/// Draws, from a routing log, one heatmap per MoE block and modality for the split
/// `split`: x = step, y = expert, colour = the expert's share of the modality's kept tokens
/// in that block and step (white 0 to dark blue 1; the numbers of [`expert_shares`]).
///
/// Experts that [`dead_experts`] finds dead at the split's last step (share below
/// `dead_threshold`) are labelled `<expert> dead` on the y axis and listed in the panel's
/// caption. Steps where a modality had no tokens leave their cells blank. A split without
/// rows is [`AnalysisError::NoData`].
pub fn plot_utilisation(
    routing: &DataFrame,
    split: &str,
    dead_threshold: f64,
    path: &Path,
    canvas: Canvas,
) -> Result<()> {
    let shares = expert_shares(routing, split)?;
    let dead = dead_set(&dead_experts(routing, split, dead_threshold)?)?;
    let [steps, blocks, experts, values] =
        [STEP, BLOCK, EXPERT, "share"].map(|c| floats(&shares, c));
    let (steps, blocks, experts, values) = (steps?, blocks?, experts?, values?);
    let modalities = strings(&shares, MODALITY)?;
    let mut panels: Shares = BTreeMap::new();
    for i in 0..shares.height() {
        let (Some(step), Some(block), Some(modality), Some(expert)) =
            (steps[i], blocks[i], modalities[i].clone(), experts[i])
        else {
            continue;
        };
        let cells = panels.entry((block as i64, modality)).or_default();
        if let Some(share) = values[i].filter(|v| v.is_finite()) {
            cells.push((step as i64, expert as i64, share));
        }
    }
    if panels.is_empty() {
        return Err(AnalysisError::NoData {
            what: "the routing log's split",
        });
    }
    let all_steps = distinct(steps.iter().flatten().map(|&s| s as i64));
    let all_experts = distinct(experts.iter().flatten().map(|&e| e as i64));
    let column = |s: i64| all_steps.binary_search(&s).unwrap_or(0);
    let row = |e: i64| all_experts.binary_search(&e).unwrap_or(0);
    let heatmaps = panels
        .into_iter()
        .map(|((block, modality), cells)| {
            let is_dead = |e: i64| dead.contains(&(block, modality.clone(), e));
            let listed: Vec<String> = all_experts
                .iter()
                .filter(|&&e| is_dead(e))
                .map(i64::to_string)
                .collect();
            let caption = match listed.is_empty() {
                true => format!("block {block}, {modality}"),
                false => format!("block {block}, {modality} (dead: {})", listed.join(", ")),
            };
            Heatmap {
                caption,
                x_desc: "step".into(),
                y_desc: format!("expert (dead: final share < {dead_threshold})"),
                columns: all_steps.iter().map(i64::to_string).collect(),
                rows: all_experts
                    .iter()
                    .map(|&e| match is_dead(e) {
                        true => format!("{e} dead"),
                        false => e.to_string(),
                    })
                    .collect(),
                cells: cells
                    .into_iter()
                    .map(|(s, e, share)| (column(s), row(e), share))
                    .collect(),
            }
        })
        .collect();
    let title = format!("Expert utilisation vs step (split {split}; colour = token share)");
    render(&HeatmapFigure { title, heatmaps }, path, canvas)
}

/// The (block, modality, expert) of a [`dead_experts`] frame.
fn dead_set(dead: &DataFrame) -> Result<BTreeSet<(i64, String, i64)>> {
    let (blocks, experts) = (floats(dead, BLOCK)?, floats(dead, EXPERT)?);
    let modalities = strings(dead, MODALITY)?;
    Ok((0..dead.height())
        .filter_map(|i| {
            Some((
                blocks[i]? as i64,
                modalities[i].clone()?,
                experts[i]? as i64,
            ))
        })
        .collect())
}
