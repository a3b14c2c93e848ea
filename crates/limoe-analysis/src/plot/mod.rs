//! Pictures of run logs: each plot function draws a frame to a PNG or SVG file of a given
//! size, titled and with labelled axes, in the bundled DejaVu Sans font (no system fonts).

mod classes;
mod compare;
mod eval;
mod losses;
mod routing_curves;
mod specialisation;
mod temperature;
mod utilisation;

use std::path::Path;
use std::sync::OnceLock;

use limoe_core::spec::{AnalysisSpec, ImageFormat};
use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};
use polars::prelude::{DataFrame, DataType};

use crate::{AnalysisError, Result};

pub use classes::plot_class_routing;
pub use compare::plot_comparison;
pub use eval::{EVAL_PANELS, plot_eval};
pub use losses::{LOSS_TERMS, plot_losses};
pub use routing_curves::plot_routing_curves;
pub use specialisation::plot_specialisation;
pub use temperature::plot_temperature;
pub use utilisation::plot_utilisation;

/// The font family every text is drawn in.
const FONT: &str = "sans-serif";

/// DejaVu Sans (see `assets/DejaVuSans-LICENSE.txt`).
const FONT_BYTES: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

/// What a picture is drawn as: its format and size in pixels (width, height).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Canvas {
    /// PNG or SVG.
    pub format: ImageFormat,
    /// Width and height in pixels.
    pub size: (u32, u32),
}

impl Canvas {
    /// One canvas per format of the spec's `analysis.formats`, of size `analysis.plot_size`.
    pub fn from_spec(spec: &AnalysisSpec) -> Vec<Canvas> {
        let [w, h] = spec.plot_size;
        spec.formats
            .iter()
            .map(|&format| Canvas {
                format,
                size: (w, h),
            })
            .collect()
    }

    /// The file extension of the format, without the dot.
    pub fn extension(&self) -> &'static str {
        match self.format {
            ImageFormat::Png => "png",
            ImageFormat::Svg => "svg",
        }
    }
}

/// Something drawable on any plotters backend.
trait Figure {
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String>;
}

/// Registers the bundled font once; the error, if any, is kept for every later call.
fn register_bundled_font() -> std::result::Result<(), String> {
    static REGISTERED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            register_font(FONT, FontStyle::Normal, FONT_BYTES)
                .map_err(|_| "the bundled font is not a valid TrueType font".to_owned())
        })
        .clone()
}

/// Draws `figure` to `path` on `canvas`.
fn render(figure: &impl Figure, path: &Path, canvas: Canvas) -> Result<()> {
    let fail = |message: String| AnalysisError::Draw {
        path: path.to_owned(),
        message,
    };
    register_bundled_font().map_err(fail)?;
    match canvas.format {
        ImageFormat::Png => {
            let root = BitMapBackend::new(path, canvas.size).into_drawing_area();
            figure.draw(&root).map_err(fail)?;
            root.present().map_err(|e| fail(e.to_string()))
        }
        ImageFormat::Svg => {
            let root = SVGBackend::new(path, canvas.size).into_drawing_area();
            figure.draw(&root).map_err(fail)?;
            root.present().map_err(|e| fail(e.to_string()))
        }
    }
}

/// The column `name` of `frame` as floats (nulls as `None`).
pub(crate) fn floats(frame: &DataFrame, name: &str) -> Result<Vec<Option<f64>>> {
    let context = || format!("reading column `{name}`");
    let column = frame
        .column(name)
        .and_then(|c| c.cast(&DataType::Float64))
        .map_err(AnalysisError::polars(context()))?;
    let values = column.f64().map_err(AnalysisError::polars(context()))?;
    Ok(values.iter().collect())
}

/// The column `name` of `frame` as strings (nulls as `None`).
pub(crate) fn strings(frame: &DataFrame, name: &str) -> Result<Vec<Option<String>>> {
    let context = || format!("reading column `{name}`");
    let column = frame
        .column(name)
        .and_then(|c| c.cast(&DataType::String))
        .map_err(AnalysisError::polars(context()))?;
    let values = column.str().map_err(AnalysisError::polars(context()))?;
    Ok(values.iter().map(|v| v.map(str::to_owned)).collect())
}

/// A range covering `values` with 5% margins (one unit either side when they are all equal,
/// `0..1` when there are none).
fn padded_range(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if lo > hi {
        0.0..1.0
    } else if lo == hi {
        lo - 1.0..hi + 1.0
    } else {
        let pad = (hi - lo) * 0.05;
        lo - pad..hi + pad
    }
}

/// The text style of titles and labels at `size` pixels.
fn font(size: u32) -> TextStyle<'static> {
    (FONT, size).into_font().into()
}

/// The colour of image tokens.
const IMAGE: RGBColor = RGBColor(31, 119, 180);
/// The colour of text tokens.
const TEXT: RGBColor = RGBColor(255, 127, 14);

/// The colour of a modality named as in the logs (`image`, `text`; grey otherwise).
fn modality_colour(modality: &str) -> RGBColor {
    match modality {
        "image" => IMAGE,
        "text" => TEXT,
        _ => RGBColor(100, 100, 100),
    }
}

/// The `i`-th colour of a palette of distinct colours.
fn palette(i: usize) -> RGBColor {
    let c = Palette99::pick(i).to_rgba();
    RGBColor(c.0, c.1, c.2)
}

/// A drawing error as text.
fn drawing<E: std::error::Error + Send + Sync>(e: DrawingAreaErrorKind<E>) -> String {
    e.to_string()
}

/// The (step, value) points of two columns where both are present and finite.
fn points(xs: &[Option<f64>], ys: &[Option<f64>]) -> Vec<(f64, f64)> {
    xs.iter()
        .zip(ys)
        .filter_map(|(&x, &y)| Some((x?, y?)))
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect()
}

/// The (rows, columns) of a near-square grid of `n` panels, wider than tall.
fn grid(n: usize) -> (usize, usize) {
    let cols = (1..=n).find(|c| c * c >= n).unwrap_or(1);
    (n.div_ceil(cols).max(1), cols)
}

/// Fills `root` white, writes `title` on top and splits the rest into `n` panels (rows
/// first) of a [`grid`].
fn panels<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    n: usize,
) -> std::result::Result<Vec<DrawingArea<DB, Shift>>, String> {
    root.fill(&WHITE).map_err(drawing)?;
    let body = root.titled(title, font(18)).map_err(drawing)?;
    Ok(grid_areas(&body, n))
}

/// `area` split into `n` panels (rows first) of a [`grid`].
fn grid_areas<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    n: usize,
) -> Vec<DrawingArea<DB, Shift>> {
    let mut areas = area.split_evenly(grid(n));
    areas.truncate(n);
    areas
}

/// Formats an axis value: whole numbers without decimals (steps), small ones in scientific
/// notation (learning rates), others to 6 decimals at most.
fn number_label(x: &f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", *x as i64)
    } else if x.abs() < 1e-3 {
        format!("{x:.2e}")
    } else {
        format!("{}", (x * 1e6).round() / 1e6)
    }
}

/// A label formatter for a category axis: position `i` shows `labels[i]`, other positions
/// nothing.
fn index_label(labels: &[String]) -> impl Fn(&f64) -> String + '_ {
    |x: &f64| {
        let i = x.round();
        if (x - i).abs() > 1e-6 || i < 0.0 {
            return String::new();
        }
        labels.get(i as usize).cloned().unwrap_or_default()
    }
}

/// One line of a [`LinePanel`].
struct Series {
    /// The legend entry; faint series have none.
    name: String,
    colour: RGBColor,
    /// Drawn thin and pale, without a legend entry (e.g. one MoE block behind the mean).
    faint: bool,
    points: Vec<(f64, f64)>,
}

impl Series {
    /// A named series in `colour`.
    fn new(name: impl Into<String>, colour: RGBColor, points: Vec<(f64, f64)>) -> Series {
        Series {
            name: name.into(),
            colour,
            faint: false,
            points,
        }
    }
}

/// A chart of lines against the step, with a legend of its named (not faint) series.
struct LinePanel {
    caption: String,
    x_desc: String,
    y_desc: String,
    series: Vec<Series>,
    /// Logarithmic y axis (used only when every value is positive).
    log_y: bool,
    /// A dot on every point (for sparse series such as periodic evaluations).
    markers: bool,
}

impl LinePanel {
    /// A linear panel with these texts and no series yet.
    fn new(caption: impl Into<String>, x_desc: &str, y_desc: impl Into<String>) -> LinePanel {
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
            chart
                .draw_series(std::iter::once(PathElement::new(
                    s.points.clone(),
                    colour.stroke_width(2),
                )))
                .map_err(drawing)?
                .label(&s.name)
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 16, y)], colour.stroke_width(2))
                });
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
struct LineFigure {
    title: String,
    panels: Vec<LinePanel>,
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
fn render_lines(
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

/// A share in `0..=1` as a colour from white (0) to dark blue (1).
fn heat_colour(share: f64) -> RGBColor {
    let t = share.clamp(0.0, 1.0);
    let mix = |from: f64, to: f64| (from + (to - from) * t).round() as u8;
    RGBColor(mix(255.0, 8.0), mix(255.0, 48.0), mix(255.0, 107.0))
}

/// A grid of coloured cells: `cells` are (column, row, share in `0..=1`) over the
/// categories `columns` (x axis) and `rows` (y axis, first at the bottom).
struct Heatmap {
    caption: String,
    x_desc: String,
    y_desc: String,
    columns: Vec<String>,
    rows: Vec<String>,
    cells: Vec<(usize, usize, f64)>,
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
            .y_label_area_size(64)
            .build_cartesian_2d(-0.5..w - 0.5, -0.5..h - 0.5)
            .map_err(drawing)?;
        let (x_label, y_label) = (index_label(&self.columns), index_label(&self.rows));
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(self.columns.len().min(10))
            .y_labels(self.rows.len().min(16))
            .x_label_formatter(&x_label)
            .y_label_formatter(&y_label)
            .x_desc(&self.x_desc)
            .y_desc(&self.y_desc)
            .label_style(font(10))
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
struct HeatmapFigure {
    title: String,
    heatmaps: Vec<Heatmap>,
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

/// The sorted distinct values of `values`.
fn distinct<T: Ord + Clone>(values: impl Iterator<Item = T>) -> Vec<T> {
    let mut all: Vec<T> = values.collect();
    all.sort();
    all.dedup();
    all
}

#[cfg(test)]
mod tests;
