//! Run-log analysis, specialisation plots and reports.
//!
//! [`read_log`] loads one of a stage's Parquet logs into a polars [`DataFrame`]
//! (`polars::prelude::DataFrame`); the functions of [`routing`] compute the specialisation,
//! utilisation and dropped-token numbers from a routing log; [`plot`] draws them as PNG or
//! SVG pictures with a bundled font; [`report`] gathers them into one HTML page per run (and
//! one comparison page per sweep); [`AnalyzeStage`] is the pipeline's `analyze` stage.

mod columns;
mod error;
pub mod plot;
mod read;
pub mod report;
pub mod routing;
mod run_dirs;
mod stage;

pub use error::AnalysisError;
pub use read::read_log;
pub use run_dirs::RunDirs;
pub use stage::AnalyzeStage;

/// Result of analysis functions.
pub type Result<T> = std::result::Result<T, AnalysisError>;
