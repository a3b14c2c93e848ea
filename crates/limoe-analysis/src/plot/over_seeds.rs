//! Lines of a setting's mean over seeds, drawn with a faint band of ± one sample standard
//! deviation: the claims' text collapse over training and accuracy against capacity.

use std::collections::BTreeMap;
use std::path::Path;

use super::{Canvas, LineFigure, LinePanel, Series, palette, render_lines};
use crate::Result;

/// One line: a name and, per x, the values of the seeds.
pub struct SeedLine {
    /// The legend entry.
    pub name: String,
    /// `(x, value)` of every seed; several values at one x are seeds.
    pub points: Vec<(f64, f64)>,
}

/// A panel of [`SeedLine`]s.
pub struct SeedPanel {
    /// The figure's title.
    pub title: String,
    /// The x axis.
    pub x_desc: String,
    /// The y axis.
    pub y_desc: String,
    /// The lines.
    pub lines: Vec<SeedLine>,
    /// Dashed horizontal lines across the panel, `(legend, value)`: a level without an x of
    /// its own, such as a dense model's accuracy, which has no capacity.
    pub references: Vec<(String, f64)>,
}

/// Draws `panel` at `path`: each line the mean over its seeds at every x, with two faint
/// lines at mean ± one sample standard deviation where it has several seeds.
pub fn plot_over_seeds(panel: &SeedPanel, path: &Path, canvas: Canvas) -> Result<()> {
    let figure = LineFigure {
        title: panel.title.clone(),
        panels: vec![seed_chart(panel)],
    };
    render_lines(figure, "a line with a finite point", path, canvas)
}

/// The chart of `panel`: per line its mean over seeds and, where it has several, faint
/// lines at ± one sample standard deviation; then the references across the lines' x range
/// (none when the lines have no point).
pub(super) fn seed_chart(panel: &SeedPanel) -> LinePanel {
    let mut chart = LinePanel::new(panel.title.clone(), &panel.x_desc, panel.y_desc.clone());
    chart.markers = true;
    for (i, line) in panel.lines.iter().enumerate() {
        let colour = palette(i);
        let mut by_x: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
        for &(x, y) in line
            .points
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
        {
            // Keyed in millionths, so that equal x of different seeds meet.
            by_x.entry((x * 1e6).round() as i64).or_default().push(y);
        }
        let mut mean = Vec::new();
        let (mut low, mut high) = (Vec::new(), Vec::new());
        for (x, ys) in &by_x {
            let x = *x as f64 / 1e6;
            let m = crate::claims::mean(ys);
            mean.push((x, m));
            if ys.len() > 1 {
                let sd = crate::claims::sample_variance(ys).sqrt();
                low.push((x, m - sd));
                high.push((x, m + sd));
            }
        }
        chart
            .series
            .push(Series::new(line.name.clone(), colour, mean));
        for band in [low, high] {
            chart.series.push(Series {
                faint: true,
                ..Series::new(String::new(), colour, band)
            });
        }
    }
    let xs = || {
        chart
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0))
    };
    let (lo, hi) = (
        xs().fold(f64::INFINITY, f64::min),
        xs().fold(f64::NEG_INFINITY, f64::max),
    );
    if lo <= hi {
        for (j, (name, value)) in panel.references.iter().enumerate() {
            if value.is_finite() {
                let colour = palette(panel.lines.len() + j);
                chart.series.push(Series {
                    dashed: true,
                    ..Series::new(name.clone(), colour, vec![(lo, *value), (hi, *value)])
                });
            }
        }
    }
    chart
}
