//! The schemas of a training run's logs: what the trainer writes and analysis reads.
//!
//! Each log is a directory `<out_dir>/<log name>/` of Parquet part files, one per flush,
//! named `part-<first step, 12 digits>.parquet` ([`part_name`]). A part is written to a
//! hidden temporary name and renamed, so readers take the parts [`part_files`] lists and
//! never see a half-written one. Rows of one part are in step order; parts may be read in any
//! order and sorted by `step`. A resumed run first drops every row after its checkpoint's step,
//! so its logs read exactly as an uninterrupted run's.
//!
//! The schemas are plain Rust (no Arrow here): [`LogSchema`] lists each column's name,
//! [`ColumnType`] and nullability; the row structs ([`MetricsRow`], [`RoutingRow`],
//! [`EvalRow`], [`AssignmentRow`]) are what the trainer fills, one field per column.

use std::path::{Path, PathBuf};

mod parts;

pub use parts::{part_files, part_name, part_step};

/// The physical type of a log column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnType {
    /// 32-bit signed integer.
    Int32,
    /// 64-bit signed integer.
    Int64,
    /// 64-bit float.
    Float64,
    /// UTF-8 string.
    Utf8,
}

/// One column of a log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Column {
    /// The column's name in the Parquet files.
    pub name: &'static str,
    /// Its type.
    pub ty: ColumnType,
    /// Whether it may hold nulls.
    pub nullable: bool,
    /// What it means, in one line.
    pub doc: &'static str,
}

/// One log: its directory name and columns, in file order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogSchema {
    /// The directory name under the train stage's output.
    pub name: &'static str,
    /// What one row is.
    pub doc: &'static str,
    /// The columns, in the order they are written.
    pub columns: &'static [Column],
}

impl LogSchema {
    /// The log's directory under a stage output `out_dir`.
    pub fn dir(&self, out_dir: &Path) -> PathBuf {
        out_dir.join(self.name)
    }

    /// The column named `name`, if the log has one.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

const fn col(name: &'static str, ty: ColumnType, doc: &'static str) -> Column {
    Column {
        name,
        ty,
        nullable: false,
        doc,
    }
}

const STEP: Column = col(
    "step",
    ColumnType::Int64,
    "optimizer steps completed when the row was recorded",
);

/// Training metrics, one row per logging interval.
pub const METRICS: LogSchema = LogSchema {
    name: "metrics",
    doc: "training metrics at one step",
    columns: &[
        STEP,
        col(
            "wall_seconds",
            ColumnType::Float64,
            "seconds since the run's start, continuing across resumes",
        ),
        col("lr", ColumnType::Float64, "learning rate of the step"),
        col("loss", ColumnType::Float64, "total loss: contrastive + aux"),
        col("contrastive", ColumnType::Float64, "contrastive loss"),
        col(
            "aux",
            ColumnType::Float64,
            "weighted sum of the auxiliary losses",
        ),
        col(
            "local_entropy_image",
            ColumnType::Float64,
            "unweighted local entropy loss of image tokens, summed over MoE blocks",
        ),
        col(
            "local_entropy_text",
            ColumnType::Float64,
            "unweighted local entropy loss of text tokens, summed over MoE blocks",
        ),
        col(
            "global_entropy_image",
            ColumnType::Float64,
            "unweighted global entropy loss of image tokens, summed over MoE blocks",
        ),
        col(
            "global_entropy_text",
            ColumnType::Float64,
            "unweighted global entropy loss of text tokens, summed over MoE blocks",
        ),
        col(
            "importance_image",
            ColumnType::Float64,
            "unweighted importance loss of image tokens, summed over MoE blocks",
        ),
        col(
            "importance_text",
            ColumnType::Float64,
            "unweighted importance loss of text tokens, summed over MoE blocks",
        ),
        col(
            "load_image",
            ColumnType::Float64,
            "unweighted load loss of image tokens, summed over MoE blocks",
        ),
        col(
            "load_text",
            ColumnType::Float64,
            "unweighted load loss of text tokens, summed over MoE blocks",
        ),
        col(
            "z_loss_image",
            ColumnType::Float64,
            "unweighted router z-loss of image tokens, summed over MoE blocks",
        ),
        col(
            "z_loss_text",
            ColumnType::Float64,
            "unweighted router z-loss of text tokens, summed over MoE blocks",
        ),
        col(
            "grad_norm",
            ColumnType::Float64,
            "global gradient norm before clipping",
        ),
        col(
            "logit_scale",
            ColumnType::Float64,
            "contrastive logit scale (1 / temperature)",
        ),
        col(
            "pairs_per_second",
            ColumnType::Float64,
            "image-text pairs trained per second over the interval",
        ),
    ],
};

/// Routing statistics: one row per step, split, MoE block, modality and expert.
pub const ROUTING: LogSchema = LogSchema {
    name: "routing",
    doc: "routing of one modality's tokens to one expert of one MoE block",
    columns: &[
        STEP,
        col(
            "split",
            ColumnType::Utf8,
            "data split the tokens came from (train, val, ...)",
        ),
        col("block", ColumnType::Int32, "encoder block index (0-based)"),
        col("modality", ColumnType::Utf8, "image or text"),
        col("expert", ColumnType::Int32, "expert index (0-based)"),
        col(
            "tokens",
            ColumnType::Int64,
            "(token, choice) assignments kept by the expert",
        ),
        col(
            "dropped",
            ColumnType::Int64,
            "(token, choice) assignments of the modality dropped in the block; the same on every expert row",
        ),
        col(
            "mean_gate",
            ColumnType::Float64,
            "mean over the modality's tokens of the clean gate p(expert|x)",
        ),
        col(
            "local_entropy",
            ColumnType::Float64,
            "mean router entropy of the modality's tokens; the same on every expert row",
        ),
        col(
            "global_entropy",
            ColumnType::Float64,
            "entropy of the modality's mean gate; the same on every expert row",
        ),
    ],
};

/// Evaluation results: one row per step, dataset and metric.
pub const EVAL: LogSchema = LogSchema {
    name: "eval",
    doc: "one evaluation number",
    columns: &[
        STEP,
        col("dataset", ColumnType::Utf8, "evaluated data set"),
        col(
            "metric",
            ColumnType::Utf8,
            "metric name, e.g. zero_shot_top1, retrieval_i2t_r1",
        ),
        col("value", ColumnType::Float64, "the metric's value"),
    ],
};

/// Per-token expert assignments dumped at evaluation: one row per token, block and choice.
pub const ASSIGNMENTS: LogSchema = LogSchema {
    name: "assignments",
    doc: "the expert one token's routing choice went to in one MoE block",
    columns: &[
        STEP,
        col(
            "key",
            ColumnType::Utf8,
            "key of the example the token belongs to",
        ),
        Column {
            name: "label",
            ty: ColumnType::Int32,
            nullable: true,
            doc: "the example's class label; null when it has none",
        },
        col("modality", ColumnType::Utf8, "image or text"),
        col("block", ColumnType::Int32, "encoder block index (0-based)"),
        col(
            "position",
            ColumnType::Int32,
            "token position within its modality's sequence",
        ),
        col(
            "choice",
            ColumnType::Int32,
            "routing choice (0 = top-1, ..., K-1)",
        ),
        col(
            "expert",
            ColumnType::Int32,
            "expert index; the number of experts means dropped",
        ),
    ],
};

/// Every log, in a fixed order.
pub const ALL_LOGS: [&LogSchema; 4] = [&METRICS, &ROUTING, &EVAL, &ASSIGNMENTS];

/// A token modality, written as `image` or `text`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Modality {
    /// Image patches.
    Image,
    /// Text tokens.
    Text,
}

impl Modality {
    /// The name written in logs.
    pub fn name(self) -> &'static str {
        match self {
            Modality::Image => "image",
            Modality::Text => "text",
        }
    }

    /// The modality written as `name`, if any.
    pub fn from_name(name: &str) -> Option<Modality> {
        match name {
            "image" => Some(Modality::Image),
            "text" => Some(Modality::Text),
            _ => None,
        }
    }
}

/// One row of [`METRICS`]; see its columns for the meaning of each field.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetricsRow {
    /// Optimizer steps completed.
    pub step: i64,
    /// Seconds since the run's start, continuing across resumes.
    pub wall_seconds: f64,
    /// Learning rate.
    pub lr: f64,
    /// Total loss.
    pub loss: f64,
    /// Contrastive loss.
    pub contrastive: f64,
    /// Weighted sum of the auxiliary losses.
    pub aux: f64,
    /// Unweighted local entropy loss of image tokens, summed over MoE blocks.
    pub local_entropy_image: f64,
    /// Unweighted local entropy loss of text tokens, summed over MoE blocks.
    pub local_entropy_text: f64,
    /// Unweighted global entropy loss of image tokens, summed over MoE blocks.
    pub global_entropy_image: f64,
    /// Unweighted global entropy loss of text tokens, summed over MoE blocks.
    pub global_entropy_text: f64,
    /// Unweighted importance loss of image tokens, summed over MoE blocks.
    pub importance_image: f64,
    /// Unweighted importance loss of text tokens, summed over MoE blocks.
    pub importance_text: f64,
    /// Unweighted load loss of image tokens, summed over MoE blocks.
    pub load_image: f64,
    /// Unweighted load loss of text tokens, summed over MoE blocks.
    pub load_text: f64,
    /// Unweighted router z-loss of image tokens, summed over MoE blocks.
    pub z_loss_image: f64,
    /// Unweighted router z-loss of text tokens, summed over MoE blocks.
    pub z_loss_text: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Contrastive logit scale (1 / temperature).
    pub logit_scale: f64,
    /// Image-text pairs trained per second.
    pub pairs_per_second: f64,
}

/// One row of [`ROUTING`].
#[derive(Clone, Debug, PartialEq)]
pub struct RoutingRow {
    /// Optimizer steps completed.
    pub step: i64,
    /// Data split (train, val, ...).
    pub split: String,
    /// Encoder block index.
    pub block: i32,
    /// Token modality.
    pub modality: Modality,
    /// Expert index.
    pub expert: i32,
    /// (token, choice) assignments kept by the expert.
    pub tokens: i64,
    /// Assignments of the modality dropped in the block (repeated on each expert's row).
    pub dropped: i64,
    /// Mean clean gate p(expert|x) over the modality's tokens.
    pub mean_gate: f64,
    /// Mean router entropy of the modality's tokens (repeated on each expert's row).
    pub local_entropy: f64,
    /// Entropy of the modality's mean gate (repeated on each expert's row).
    pub global_entropy: f64,
}

/// One row of [`EVAL`].
#[derive(Clone, Debug, PartialEq)]
pub struct EvalRow {
    /// Optimizer steps completed.
    pub step: i64,
    /// Evaluated data set.
    pub dataset: String,
    /// Metric name, e.g. `zero_shot_top1`.
    pub metric: String,
    /// The metric's value.
    pub value: f64,
}

/// One row of [`ASSIGNMENTS`].
#[derive(Clone, Debug, PartialEq)]
pub struct AssignmentRow {
    /// Optimizer steps completed.
    pub step: i64,
    /// Key of the example.
    pub key: String,
    /// The example's class label, if it has one.
    pub label: Option<i32>,
    /// Token modality.
    pub modality: Modality,
    /// Encoder block index.
    pub block: i32,
    /// Token position within its modality's sequence.
    pub position: i32,
    /// Routing choice (0 = top-1).
    pub choice: i32,
    /// Expert index; the number of experts means the choice was dropped.
    pub expert: i32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_names_are_unique_and_start_with_step() {
        for log in ALL_LOGS {
            assert_eq!(log.columns[0], STEP, "{}", log.name);
            for (i, c) in log.columns.iter().enumerate() {
                assert_eq!(log.column(c.name), Some(&log.columns[i]), "{}", c.name);
            }
        }
        assert_eq!(
            METRICS.dir(Path::new("runs/x")),
            Path::new("runs/x/metrics")
        );
        assert_eq!(
            Modality::from_name(Modality::Text.name()),
            Some(Modality::Text)
        );
        assert_eq!(Modality::from_name("audio"), None);
    }
}
