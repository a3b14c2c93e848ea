//! Run-log analysis, specialisation plots and reports.
//!
//! [`read_log`] loads one of a stage's Parquet logs into a polars
//! [`DataFrame`](polars::prelude::DataFrame); the functions of [`routing`] compute the
//! specialisation, utilisation (per step: [`routing::expert_shares`]) and dropped-token
//! numbers from a routing log; those of [`assignments`] the
//! per-class routing of image tokens; [`compare::compare_table`] the mean and spread over
//! seeds of each setting's metrics across runs. [`plot`] draws them as PNG or SVG pictures
//! with a bundled font, one function per picture:
//!
//! - [`plot::plot_specialisation`]: per MoE block, each expert's image/text share;
//! - [`plot::plot_utilisation`]: per block and modality, expert shares vs step (heatmaps),
//!   dead experts flagged;
//! - [`plot::plot_routing_curves`]: local and global router entropy and dropped-token rate
//!   vs step, per modality;
//! - [`plot::plot_class_routing`]: per block, class x expert shares of image tokens;
//! - [`plot::plot_losses`]: loss terms vs step (total and parts; unweighted auxiliaries);
//! - [`plot::plot_temperature`]: temperature (1 / logit scale) and learning rate vs step;
//! - [`plot::plot_eval`]: zero-shot, retrieval R@1 and few-shot metrics vs step;
//! - [`plot::plot_capacity`]: accuracy vs inference capacity factor and vs GFLOPs per example,
//!   with and without BPR;
//! - [`plot::plot_comparison`]: per metric, a bar per setting (mean over seeds, ± std);
//! - [`plot::plot_patch_routing`]: one image's patches tinted by their experts.
//!
//! [`capacity`] reads V-MoE's inference-capacity curves (accuracy, dropped assignments and
//! GFLOPs against the capacity factor, with and without BPR) from an eval summary, and
//! [`plot::plot_capacity`] draws them.
//!
//! [`claims`] judges the LIMoE paper's claims on a sweep's settings (a verdict with its
//! effect and spread over seeds).
//!
//! [`report`] gathers them into one HTML page per run (and one comparison page per sweep),
//! metrics named in words by [`names`];
//! [`AnalyzeStage`] is the pipeline's `analyze` stage.

pub mod assignments;
pub mod capacity;
pub mod claims;
mod columns;
pub mod compare;
mod error;
pub mod live;
pub mod names;
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
