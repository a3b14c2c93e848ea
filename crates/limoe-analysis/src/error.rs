//! Errors of analysis.

use std::path::PathBuf;

/// What can go wrong reading logs, computing numbers or drawing.
#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    /// A log's directory does not exist.
    #[error(
        "no `{log}` log at {}: it is written by the train and eval stages; run one of them first",
        dir.display()
    )]
    MissingLog {
        /// The log's name.
        log: &'static str,
        /// The directory that was expected.
        dir: PathBuf,
    },
    /// A log directory or part file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The path being read.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A part file is not valid Parquet, or a computation failed in polars.
    #[error("{context}: {source}")]
    Polars {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: polars::error::PolarsError,
    },
    /// A plot was asked for a frame with nothing to draw.
    #[error("nothing to plot: {what} has no rows")]
    NoData {
        /// What was to be drawn.
        what: &'static str,
    },
    /// A picture could not be drawn or written.
    #[error("cannot draw {}: {message}", path.display())]
    Draw {
        /// The picture's path.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

impl AnalysisError {
    /// Wraps a polars error with what was being done.
    pub(crate) fn polars(
        context: impl Into<String>,
    ) -> impl FnOnce(polars::error::PolarsError) -> Self {
        let context = context.into();
        move |source| AnalysisError::Polars { context, source }
    }
}
