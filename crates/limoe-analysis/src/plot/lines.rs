//! Line charts against the step: panels of named series with a legend, drawn in a grid.

use std::path::Path;

use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::element::DashedPathElement;
use plotters::prelude::*;

use super::{Canvas, Figure, drawing, font, number_label, padded_range, panels, render};
use crate::{AnalysisError, Result};

/// One line of a [`LinePanel`].
pub(super) struct Series {
    /// The legend entry; faint series have none.
    pub(super) name: String,
    pub(super) colour: RGBColor,
    /// Drawn thin and pale, without a legend entry (e.g. one MoE block behind the mean).
    pub(super) faint: bool,
    /// Drawn dashed, without markers (a reference level rather than a measured curve).
    pub(super) dashed: bool,
    pub(super) points: Vec<(f64, f64)>,
}

impl Series {
    /// A named series in `colour`.
    pub(super) fn new(
        name: impl Into<String>,
        colour: RGBColor,
        points: Vec<(f64, f64)>,
    ) -> Series {
        Series {
            name: name.into(),
            colour,
            faint: false,
            dashed: false,
            points,
        }
    }
}

/// A chart of lines against the step, with a legend of its named (not faint) series.
pub(super) struct LinePanel {
    pub(super) caption: String,
    pub(super) x_desc: String,
    pub(super) y_desc: String,
    pub(super) series: Vec<Series>,
    /// Logarithmic y axis (used only when every value is positive).
    pub(super) log_y: bool,
    /// A dot on every point (for sparse series such as periodic evaluations).
    pub(super) markers: bool,
}

impl LinePanel {
    /// A linear panel with these texts and no series yet.
    pub(super) fn new(
        caption: impl Into<String>,
        x_desc: &str,
        y_desc: impl Into<String>,
    ) -> LinePanel {
        LinePanel {
            caption: caption.into(),
            x_desc: x_desc.into(),
            y_desc: y_desc.into(),
            series: Vec::new(),
            log_y: false,
            markers: false,
        }
    }

    fn values(&self) -> impl Iterator<Item = &(f64, f64)> {
        self.series.iter().flat_map(|s| s.points.iter())
    }

    /// Whether the panel has no point to draw.
    fn is_empty(&self) -> bool {
        self.values().next().is_none()
    }

    /// Draws the panel on `area`.
    fn draw<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String> {
        let x = padded_range(self.values().map(|p| p.0));
        let ys = || self.values().map(|p| p.1);
        if self.log_y && ys().all(|y| y > 0.0) {
            let (lo, hi) = ys().fold((f64::INFINITY, 0.0f64), |(l, h), y| (l.min(y), h.max(y)));
            self.draw_on(area, x, (lo / 1.5..hi * 1.5).log_scale())
        } else {
            self.draw_on(area, x, padded_range(ys()))
        }
    }

    fn draw_on<DB: DrawingBackend, Y>(
        &self,
        area: &DrawingArea<DB, Shift>,
        x: std::ops::Range<f64>,
        y: Y,
    ) -> std::result::Result<(), String>
    where
        Y: AsRangedCoord<Value = f64>,
        Y::CoordDescType: ValueFormatter<f64>,
    {
        let mut chart = ChartBuilder::on(area)
            .caption(&self.caption, font(14))
            .margin(8)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(x, y)
            .map_err(drawing)?;
        chart
            .configure_mesh()
            .light_line_style(TRANSPARENT)
            .x_label_formatter(&number_label)
            .y_label_formatter(&number_label)
            .x_desc(&self.x_desc)
            .y_desc(&self.y_desc)
            .label_style(font(11))
            .axis_desc_style(font(12))
            .draw()
            .map_err(drawing)?;
        let (faint, named): (Vec<&Series>, Vec<&Series>) =
            self.series.iter().partition(|s| s.faint);
        for s in faint {
            let style = s.colour.mix(0.3).stroke_width(1);
            chart
                .draw_series(std::iter::once(PathElement::new(s.points.clone(), style)))
                .map_err(drawing)?;
        }
        for s in &named {
            let colour = s.colour;
            let style = colour.stroke_width(2);
            if s.dashed {
                let (dash, gap) = (6, 4);
                let line = DashedPathElement::new(s.points.clone(), dash, gap, style);
                chart
                    .draw_series(std::iter::once(line))
                    .map_err(drawing)?
                    .label(&s.name)
                    .legend(move |(x, y)| {
                        DashedPathElement::new(vec![(x, y), (x + 16, y)], dash, gap, style)
                    });
                continue;
            }
            chart
                .draw_series(std::iter::once(PathElement::new(s.points.clone(), style)))
                .map_err(drawing)?
                .label(&s.name)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], style));
            if self.markers {
                let dots = s.points.iter().map(|&p| Circle::new(p, 3, colour.filled()));
                chart.draw_series(dots).map_err(drawing)?;
            }
        }
        if !named.is_empty() {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .label_font(font(10))
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(drawing)?;
        }
        Ok(())
    }
}

/// Draws `panels` (at least one) under `title` in a grid.
pub(super) struct LineFigure {
    pub(super) title: String,
    pub(super) panels: Vec<LinePanel>,
}

impl Figure for LineFigure {
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String> {
        for (area, panel) in panels(root, &self.title, self.panels.len())?
            .iter()
            .zip(&self.panels)
        {
            panel.draw(area)?;
        }
        Ok(())
    }
}

/// Draws the non-empty panels of `figure` to `path`; [`AnalysisError::NoData`] about
/// `what` when every panel is empty.
pub(super) fn render_lines(
    mut figure: LineFigure,
    what: &'static str,
    path: &Path,
    canvas: Canvas,
) -> Result<()> {
    figure.panels.retain(|p| !p.is_empty());
    if figure.panels.is_empty() {
        return Err(AnalysisError::NoData { what });
    }
    render(&figure, path, canvas)
}
