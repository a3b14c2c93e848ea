//! Heatmaps of shares in `0..=1` over two category axes, with a colour scale.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{Figure, drawing, font, grid_areas, index_label, text_width};

/// Pixel size of the category labels.
const LABEL_SIZE: u32 = 10;

/// Pixels left of the y axis for its labels: the longest label as the bundled font draws it,
/// plus the tick marks and the rotated axis description.
pub(super) fn y_label_area(rows: &[String]) -> u32 {
    let longest = rows
        .iter()
        .map(|r| text_width(r, LABEL_SIZE))
        .max()
        .unwrap_or(0);
    longest + 34
}

/// A share in `0..=1` as a colour from white (0) to dark blue (1).
fn heat_colour(share: f64) -> RGBColor {
    let t = share.clamp(0.0, 1.0);
    let mix = |from: f64, to: f64| (from + (to - from) * t).round() as u8;
    RGBColor(mix(255.0, 8.0), mix(255.0, 48.0), mix(255.0, 107.0))
}

/// A grid of coloured cells: `cells` are (column, row, share in `0..=1`) over the
/// categories `columns` (x axis) and `rows` (y axis, first at the bottom).
pub(super) struct Heatmap {
    pub(super) caption: String,
    pub(super) x_desc: String,
    pub(super) y_desc: String,
    pub(super) columns: Vec<String>,
    pub(super) rows: Vec<String>,
    pub(super) cells: Vec<(usize, usize, f64)>,
}

impl Heatmap {
    /// Draws the heatmap on `area`.
    fn draw<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String> {
        let (w, h) = (self.columns.len() as f64, self.rows.len() as f64);
        let mut chart = ChartBuilder::on(area)
            .caption(&self.caption, font(13))
            .margin(6)
            .x_label_area_size(34)
            .y_label_area_size(y_label_area(&self.rows))
            .build_cartesian_2d(-0.5..w - 0.5, -0.5..h - 0.5)
            .map_err(drawing)?;
        let (x_label, y_label) = (index_label(&self.columns), index_label(&self.rows));
        chart
            .configure_mesh()
            .disable_mesh()
            // As many labels as categories: the axis puts one at every whole position.
            .x_labels(self.columns.len())
            .y_labels(self.rows.len())
            .x_label_formatter(&x_label)
            .y_label_formatter(&y_label)
            .x_desc(&self.x_desc)
            .y_desc(&self.y_desc)
            .label_style(font(LABEL_SIZE))
            .axis_desc_style(font(11))
            .draw()
            .map_err(drawing)?;
        let cells = self.cells.iter().map(|&(c, r, share)| {
            let (x, y) = (c as f64, r as f64);
            Rectangle::new(
                [(x - 0.5, y - 0.5), (x + 0.5, y + 0.5)],
                heat_colour(share).filled(),
            )
        });
        chart.draw_series(cells).map_err(drawing)?;
        Ok(())
    }
}

/// Draws `heatmaps` under `title` in a grid.
pub(super) struct HeatmapFigure {
    pub(super) title: String,
    pub(super) heatmaps: Vec<Heatmap>,
}

impl Figure for HeatmapFigure {
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String> {
        root.fill(&WHITE).map_err(drawing)?;
        let body = root.titled(&self.title, font(18)).map_err(drawing)?;
        let width = body.dim_in_pixel().0;
        let (maps, scale) = body.split_horizontally(width.saturating_sub(90));
        for (area, heatmap) in grid_areas(&maps, self.heatmaps.len())
            .iter()
            .zip(&self.heatmaps)
        {
            heatmap.draw(area)?;
        }
        colour_scale(&scale)
    }
}

/// The key of [`heat_colour`]: a vertical bar of shares 0 to 1.
fn colour_scale<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
) -> std::result::Result<(), String> {
    let mut chart = ChartBuilder::on(area)
        .margin_top(30)
        .margin_bottom(40)
        .margin_left(8)
        .set_label_area_size(LabelAreaPosition::Right, 48)
        .build_cartesian_2d(0.0..1.0, 0.0..1.0)
        .map_err(drawing)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .y_labels(6)
        .y_desc("share")
        .label_style(font(10))
        .axis_desc_style(font(11))
        .draw()
        .map_err(drawing)?;
    let steps = 50;
    let bands = (0..steps).map(|i| {
        let (lo, hi) = (i as f64 / steps as f64, (i + 1) as f64 / steps as f64);
        Rectangle::new(
            [(0.0, lo), (1.0, hi)],
            heat_colour((lo + hi) / 2.0).filled(),
        )
    });
    chart.draw_series(bands).map_err(drawing)?;
    Ok(())
}
