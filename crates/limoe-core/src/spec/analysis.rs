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
    }
}
