//! The `analysis` section: plots and reports.

use serde::{Deserialize, Serialize};

use super::check::Checker;
use super::path::KeyPath;

/// Picture formats of the report.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ImageFormat {
    /// Raster.
    Png,
    /// Vector.
    Svg,
}

/// The whole `analysis` section.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AnalysisSpec {
    /// Formats every plot is drawn in.
    pub formats: Vec<ImageFormat>,
    /// An expert receiving less than this share of a modality's tokens is flagged dead.
    pub dead_expert_threshold: f64,
    /// Plot size in pixels (width, height).
    pub plot_size: [u32; 2],
}

impl Default for AnalysisSpec {
    fn default() -> AnalysisSpec {
        AnalysisSpec {
            formats: vec![ImageFormat::Png, ImageFormat::Svg],
            dead_expert_threshold: 0.01,
            plot_size: [800, 500],
        }
    }
}

/// The largest side of a plot, in pixels: a PNG is drawn on a bitmap of width x height x 3
/// bytes (192 MiB at 8192 x 8192), and plotters counts its pixels in a `u32`, which larger
/// plots overflow.
const MAX_PLOT_SIDE: u32 = 8192;

impl AnalysisSpec {
    pub(super) fn check(&self, at: &KeyPath, c: &mut Checker) {
        c.require(!self.formats.is_empty(), &at.key("formats"), || {
            "at least one picture format is needed".into()
        });
        let t = self.dead_expert_threshold;
        c.require(
            (0.0..=1.0).contains(&t),
            &at.key("dead_expert_threshold"),
            || format!("a share between 0 and 1 is needed (got {t})"),
        );
        let [w, h] = self.plot_size;
        c.require(w >= 100 && h >= 100, &at.key("plot_size"), || {
            format!("plots need at least 100x100 pixels (got {w}x{h})")
        });
        if w > MAX_PLOT_SIDE || h > MAX_PLOT_SIDE {
            c.error(
                &at.key("plot_size"),
                format!(
                    "a plot of {w}x{h} pixels is over the limit of {MAX_PLOT_SIDE} pixels a side"
                ),
                Some(format!(
                    "use at most {MAX_PLOT_SIDE}x{MAX_PLOT_SIDE} (the default is 800x500)"
                )),
            );
        }
    }
}
