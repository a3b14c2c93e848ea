//! Run-log analysis, specialisation plots and reports.
//!
//! [`read_log`] loads one of a stage's Parquet logs into a polars [`DataFrame`]
//! (`polars::prelude::DataFrame`); the functions of [`routing`] compute the specialisation,
//! utilisation and dropped-token numbers from a routing log; [`plot`] draws them as PNG or
//! SVG pictures with a bundled font.

mod error;
pub mod plot;
mod read;
pub mod routing;

pub use error::AnalysisError;
pub use read::read_log;

/// Result of analysis functions.
pub type Result<T> = std::result::Result<T, AnalysisError>;
