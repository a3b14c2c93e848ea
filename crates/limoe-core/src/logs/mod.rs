//! The schemas of a training run's logs: what the trainer writes and analysis reads.
//!
//! Each log is a directory `<out_dir>/<log name>/` of Parquet part files, one per flush,
//! named `part-<first step, 12 digits>.parquet` ([`part_name`]). A part is written to a
//! hidden temporary name and renamed, so readers take the parts [`part_files`] lists and
//! never see a half-written one. Rows of one part are in step order; parts may be read in any
//! order and sorted by `step`. A resumed run first drops every row after its checkpoint's
//! step, so its logs read exactly as an uninterrupted run's.
//!
//! The schemas are plain Rust (no Arrow here). Each log is declared once, a line per column
//! (see `schemas.rs`), which gives its [`LogSchema`] ([`METRICS`], [`ROUTING`], [`EVAL`],
//! [`ASSIGNMENTS`]: each column's name, [`ColumnType`] and nullability), its row struct
//! ([`MetricsRow`], [`RoutingRow`], [`EvalRow`], [`AssignmentRow`]: one field per column,
//! what the trainer fills), its column names (the modules [`metrics`], [`routing`],
//! [`eval`], [`assignments`]: what analysis selects by) and the [`LogRow`] conversion of
//! rows to and from [`ColumnData`], which the trainer maps to Arrow. The names the eval log's
//! rows carry are in [`eval_metrics`].

use std::path::{Path, PathBuf};

mod column;
pub mod eval_metrics;
mod modality;
mod parts;
mod row;
mod schemas;

pub use column::{ColumnData, ColumnValue};
pub use modality::Modality;
pub use parts::{part_files, part_name, part_step};
pub use row::LogRow;
pub use schemas::{
    ASSIGNMENTS, AssignmentRow, EVAL, EvalRow, METRICS, MetricsRow, ROUTING, RoutingRow,
    assignments, eval, metrics, routing,
};

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

/// The first column of every log: the step its row was recorded at.
pub const STEP: Column = Column {
    name: "step",
    ty: ColumnType::Int64,
    nullable: false,
    doc: "optimizer steps completed when the row was recorded",
};

/// Every log, in a fixed order.
pub const ALL_LOGS: [&LogSchema; 4] = [&METRICS, &ROUTING, &EVAL, &ASSIGNMENTS];

/// The `split` of the routing rows the trainer logs of its own steps, routed at the train
/// capacity (evaluations log theirs under the split they embed).
pub const TRAINING_STEPS_SPLIT: &str = "train";

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
