//! Comparison across runs: per metric, a bar per setting with its spread over seeds.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use polars::prelude::DataFrame;

use super::{Canvas, Figure, drawing, font, index_label, padded_range, palette, panels, render};
use crate::compare::{Group, groups};
use crate::{AnalysisError, Result};

/// One metric's bars: each setting's group with its colour (the setting's index among all
/// settings, so that a setting has the same colour in every panel).
struct Panel {
    metric: String,
    bars: Vec<(usize, Group)>,
}

struct Comparison {
    panels: Vec<Panel>,
}

/// Draws a tidy comparison frame (columns `setting`, `seed`, `metric`, `value`; see
/// [`compare_table`](crate::compare::compare_table), whose numbers it draws) as one panel
/// per metric: a bar per setting, in first-appearance order, up to the mean over seeds,
/// with an error bar of ± the sample standard deviation (none when a setting has one
/// seed); each setting's label gives its number of seeds n. An empty frame is
/// [`AnalysisError::NoData`].
pub fn plot_comparison(frame: &DataFrame, path: &Path, canvas: Canvas) -> Result<()> {
    let mut figure = Comparison { panels: Vec::new() };
    let mut settings: Vec<String> = Vec::new();
    for group in groups(frame)? {
        let colour = match settings.iter().position(|s| *s == group.setting) {
            Some(i) => i,
            None => {
                settings.push(group.setting.clone());
                settings.len() - 1
            }
        };
        match figure.panels.last_mut() {
            Some(panel) if panel.metric == group.metric => panel.bars.push((colour, group)),
            _ => figure.panels.push(Panel {
                metric: group.metric.clone(),
                bars: vec![(colour, group)],
            }),
        }
    }
    if figure.panels.is_empty() {
        return Err(AnalysisError::NoData {
            what: "the comparison frame",
        });
    }
    render(&figure, path, canvas)
}

impl Figure for Comparison {
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String> {
        let title = "Comparison across runs: mean over seeds ± sample std";
        for (area, panel) in panels(root, title, self.panels.len())?
            .iter()
            .zip(&self.panels)
        {
            panel.draw(area)?;
        }
        Ok(())
    }
}

/// A bar's label: its setting and number of seeds.
fn bar_label(group: &Group) -> String {
    format!("{} (n = {})", group.setting, group.values.len())
}

/// Pixels below a panel for its setting labels, drawn rotated: the longest label's length.
fn label_area(bars: &[(usize, Group)]) -> u32 {
    let longest = bars
        .iter()
        .map(|(_, g)| bar_label(g).chars().count())
        .max()
        .unwrap_or(0);
    (longest as u32 * 7).clamp(30, 160)
}

impl Panel {
    fn draw<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String> {
        let ends = self.bars.iter().flat_map(|(_, group)| {
            let (mean, s) = (group.mean(), group.std().unwrap_or(0.0));
            [0.0, mean - s, mean + s]
        });
        let count = self.bars.len() as f64;
        let mut chart = ChartBuilder::on(area)
            .caption(&self.metric, font(14))
            .margin(8)
            .x_label_area_size(label_area(&self.bars))
            .y_label_area_size(56)
            .build_cartesian_2d(-0.5..count - 0.5, padded_range(ends))
            .map_err(drawing)?;
        let settings: Vec<String> = self.bars.iter().map(|(_, g)| bar_label(g)).collect();
        let label = index_label(&settings);
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(TRANSPARENT)
            .x_labels(self.bars.len().min(12))
            .x_label_formatter(&label)
            .y_desc("mean over seeds")
            .label_style(font(11))
            .x_label_style(font(11).transform(FontTransform::Rotate90))
            .axis_desc_style(font(12))
            .draw()
            .map_err(drawing)?;
        for (i, (colour, group)) in self.bars.iter().enumerate() {
            let (x, colour) = (i as f64, palette(*colour));
            let (mean, std) = (group.mean(), group.std());
            chart
                .draw_series([Rectangle::new(
                    [(x - 0.35, 0.0), (x + 0.35, mean)],
                    colour.mix(0.8).filled(),
                )])
                .map_err(drawing)?;
            if let Some(s) = std {
                chart
                    .draw_series(
                        [
                            [(x, mean - s), (x, mean + s)],
                            [(x - 0.1, mean - s), (x + 0.1, mean - s)],
                            [(x - 0.1, mean + s), (x + 0.1, mean + s)],
                        ]
                        .map(|line| PathElement::new(line, BLACK.stroke_width(2))),
                    )
                    .map_err(drawing)?;
            }
        }
        Ok(())
    }
}
