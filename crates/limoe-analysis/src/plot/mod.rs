//! Pictures of run logs: each plot function draws a frame to a PNG or SVG file of a given
//! size, titled and with labelled axes, in the bundled DejaVu Sans font (no system fonts).
//!
//! Every plot function takes a frame (a log, or the numbers computed from one), the
//! picture's path and a [`Canvas`], and fails with [`AnalysisError::NoData`] when there is
//! nothing to draw (never a panic). The shared drawing parts live here (panel grid, colours,
//! axis labels) and in the private modules `lines` (line panels with legends, optional log
//! y axis) and `heatmap` (share heatmaps with a colour scale).

mod capacity;
mod classes;
mod compare;
mod eval;
mod heatmap;
mod lines;
mod losses;
mod over_seeds;
mod patch_routing;
mod routing_curves;
mod specialisation;
mod temperature;
mod utilisation;

use std::path::Path;
use std::sync::OnceLock;

use limoe_core::spec::{AnalysisSpec, ImageFormat};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

pub(crate) use crate::columns::{floats, strings};
use crate::{AnalysisError, Result};
use heatmap::{Heatmap, HeatmapFigure};
use lines::{LineFigure, LinePanel, Series, render_lines};

pub use capacity::{CapacityFigure, CapacityLine, plot_capacity};
pub use classes::{MAX_CLASSES, plot_class_routing};
pub use compare::plot_comparison;
pub use eval::{EVAL_PANELS, plot_eval};
pub use losses::{LOSS_TERMS, plot_losses};
pub use over_seeds::{SeedLine, SeedPanel, plot_over_seeds};
pub use patch_routing::{PatchRouting, patch_routing_size, plot_patch_routing};
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

/// The width in pixels of `text` drawn in the bundled font at `size` pixels (a generous
/// estimate if the font cannot measure it).
fn text_width(text: &str, size: u32) -> u32 {
    let _ = register_bundled_font();
    font(size)
        .font
        .box_size(text)
        .map_or(text.chars().count() as u32 * size, |(w, _)| w)
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
