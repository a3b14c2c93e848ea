//! The specialisation bar chart: per MoE block, experts sorted by image share.

use std::path::Path;

use limoe_core::logs::routing::{BLOCK, EXPERT, STEP};
use plotters::coord::Shift;
use plotters::prelude::*;
use polars::prelude::DataFrame;

use super::{Canvas, Figure, IMAGE, TEXT, drawing, floats, font, index_label, panels, render};
use crate::{AnalysisError, Result};

/// One block's experts in drawing order: (expert, image share; `None` without tokens).
struct Block {
    block: i64,
    experts: Vec<(i64, Option<f64>)>,
}

struct Specialisation {
    step: i64,
    blocks: Vec<Block>,
}

/// Draws the frame of `routing::image_shares` as one panel per MoE block: a bar per expert,
/// in the frame's order (by image share), its image share at the bottom and its text share
/// on top; experts without tokens have no bar.
pub fn plot_specialisation(shares: &DataFrame, path: &Path, canvas: Canvas) -> Result<()> {
    let steps = floats(shares, STEP)?;
    let blocks = floats(shares, BLOCK)?;
    let experts = floats(shares, EXPERT)?;
    let image = floats(shares, "image_share")?;
    let mut figure = Specialisation {
        step: 0,
        blocks: Vec::new(),
    };
    for i in 0..shares.height() {
        let (Some(step), Some(block), Some(expert)) = (steps[i], blocks[i], experts[i]) else {
            continue;
        };
        figure.step = figure.step.max(step as i64);
        let (block, expert) = (block as i64, expert as i64);
        match figure.blocks.last_mut() {
            Some(last) if last.block == block => last.experts.push((expert, image[i])),
            _ => figure.blocks.push(Block {
                block,
                experts: vec![(expert, image[i])],
            }),
        }
    }
    if figure.blocks.is_empty() {
        return Err(AnalysisError::NoData {
            what: "the image-share frame",
        });
    }
    render(&figure, path, canvas)
}

impl Figure for Specialisation {
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String> {
        let e = drawing;
        let title = format!("Expert specialisation by modality at step {}", self.step);
        let areas = panels(root, &title, self.blocks.len())?;
        for (k, (area, block)) in areas.iter().zip(&self.blocks).enumerate() {
            let count = block.experts.len() as f64;
            let mut chart = ChartBuilder::on(area)
                .caption(format!("MoE block {}", block.block), font(14))
                .margin(6)
                .x_label_area_size(32)
                .y_label_area_size(44)
                .build_cartesian_2d(-0.5..count - 0.5, 0.0..1.0)
                .map_err(e)?;
            let ids: Vec<String> = block.experts.iter().map(|(id, _)| id.to_string()).collect();
            let label = index_label(&ids);
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_labels(block.experts.len().min(16))
                .x_label_formatter(&label)
                .x_desc("expert, by image share")
                .y_desc("share of tokens")
                .label_style(font(11))
                .axis_desc_style(font(12))
                .draw()
                .map_err(e)?;
            let bars = |color: RGBColor, text: bool| {
                block
                    .experts
                    .iter()
                    .enumerate()
                    .filter_map(move |(i, &(_, share))| {
                        let s = share?;
                        let x = i as f64;
                        let (lo, hi) = if text { (s, 1.0) } else { (0.0, s) };
                        Some(Rectangle::new(
                            [(x - 0.4, lo), (x + 0.4, hi)],
                            color.filled(),
                        ))
                    })
            };
            let image = chart.draw_series(bars(IMAGE, false)).map_err(e)?;
            if k == 0 {
                image
                    .label("image")
                    .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], IMAGE.filled()));
            }
            let text = chart.draw_series(bars(TEXT, true)).map_err(e)?;
            if k == 0 {
                text.label("text")
                    .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], TEXT.filled()));
                chart
                    .configure_series_labels()
                    .label_font(font(11))
                    .background_style(WHITE.mix(0.8))
                    .border_style(BLACK)
                    .draw()
                    .map_err(e)?;
            }
        }
        Ok(())
    }
}
