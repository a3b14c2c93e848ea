//! Pictures of run logs: each plot function draws a frame to a PNG or SVG file of a given
//! size, titled and with labelled axes, in the bundled DejaVu Sans font (no system fonts).

mod losses;
mod specialisation;

use std::path::Path;
use std::sync::OnceLock;

use limoe_core::spec::{AnalysisSpec, ImageFormat};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};
use polars::prelude::{DataFrame, DataType};

use crate::{AnalysisError, Result};

pub use losses::{LOSS_TERMS, plot_losses};
pub use specialisation::plot_specialisation;

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
fn floats(frame: &DataFrame, name: &str) -> Result<Vec<Option<f64>>> {
    let context = || format!("reading column `{name}`");
    let column = frame
        .column(name)
        .and_then(|c| c.cast(&DataType::Float64))
        .map_err(AnalysisError::polars(context()))?;
    let values = column.f64().map_err(AnalysisError::polars(context()))?;
    Ok(values.iter().collect())
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

#[cfg(test)]
mod tests;
