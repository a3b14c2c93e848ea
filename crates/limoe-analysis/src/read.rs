//! Loading a log directory of Parquet part files.

use std::fs::File;
use std::path::Path;

use limoe_core::logs::{ColumnType, LogSchema, STEP, part_files};
use polars::prelude::*;

use crate::{AnalysisError, Result};

/// Loads the log `log` of the stage output `out_dir` (every part [`part_files`] lists) into
/// one frame sorted by `step`.
///
/// A directory without parts gives an empty frame with the log's columns; a missing
/// directory gives [`AnalysisError::MissingLog`].
pub fn read_log(out_dir: &Path, log: &LogSchema) -> Result<DataFrame> {
    let dir = log.dir(out_dir);
    if !dir.is_dir() {
        return Err(AnalysisError::MissingLog { log: log.name, dir });
    }
    let parts = part_files(&dir).map_err(|source| AnalysisError::Io {
        path: dir.clone(),
        source,
    })?;
    let mut frames = Vec::with_capacity(parts.len());
    for part in &parts {
        let file = File::open(part).map_err(|source| AnalysisError::Io {
            path: part.clone(),
            source,
        })?;
        let frame = ParquetReader::new(file)
            .finish()
            .map_err(AnalysisError::polars(format!("reading {}", part.display())))?;
        frames.push(frame.lazy());
    }
    let context = format!("loading the `{}` log at {}", log.name, dir.display());
    let all = if frames.is_empty() {
        empty_frame(log).lazy()
    } else {
        concat(frames, UnionArgs::default()).map_err(AnalysisError::polars(context.clone()))?
    };
    all.sort(
        [STEP.name],
        SortMultipleOptions::default().with_maintain_order(true),
    )
    .collect()
    .map_err(AnalysisError::polars(context))
}

/// A frame with no rows and the log's columns.
fn empty_frame(log: &LogSchema) -> DataFrame {
    let schema: Schema = log
        .columns
        .iter()
        .map(|c| {
            let dtype = match c.ty {
                ColumnType::Int32 => DataType::Int32,
                ColumnType::Int64 => DataType::Int64,
                ColumnType::Float64 => DataType::Float64,
                ColumnType::Utf8 => DataType::String,
            };
            (PlSmallStr::from(c.name), dtype)
        })
        .collect();
    DataFrame::empty_with_schema(&schema)
}

#[cfg(test)]
mod tests {
    use limoe_core::logs::{EVAL, ROUTING};

    use super::*;

    fn write_part(dir: &Path, name: &str, steps: &[i64]) {
        let n = steps.len();
        let mut frame = df!(
            "step" => steps,
            "dataset" => vec!["val"; n],
            "metric" => vec!["zero_shot_top1"; n],
            "value" => steps.iter().map(|&s| s as f64 / 10.0).collect::<Vec<_>>(),
        )
        .unwrap();
        let file = File::create(dir.join(name)).unwrap();
        ParquetWriter::new(file).finish(&mut frame).unwrap();
    }

    #[test]
    fn parts_are_concatenated_in_step_order_and_hidden_files_skipped() {
        let out = tempfile::tempdir().unwrap();
        let dir = EVAL.dir(out.path());
        std::fs::create_dir(&dir).unwrap();
        write_part(&dir, "part-000000000300.parquet", &[300]);
        write_part(&dir, "part-000000000100.parquet", &[100, 200]);
        std::fs::write(dir.join(".part-000000000400.parquet"), b"half-written").unwrap();
        std::fs::write(dir.join("notes.txt"), b"not a part").unwrap();
        let frame = read_log(out.path(), &EVAL).unwrap();
        let steps: Vec<_> = frame
            .column("step")
            .unwrap()
            .i64()
            .unwrap()
            .iter()
            .collect();
        assert_eq!(steps, [Some(100), Some(200), Some(300)]);
        let values: Vec<_> = frame
            .column("value")
            .unwrap()
            .f64()
            .unwrap()
            .iter()
            .collect();
        assert_eq!(values, [Some(10.0), Some(20.0), Some(30.0)]);
    }

    #[test]
    fn an_empty_log_has_the_schema_s_columns() {
        let out = tempfile::tempdir().unwrap();
        std::fs::create_dir(ROUTING.dir(out.path())).unwrap();
        let frame = read_log(out.path(), &ROUTING).unwrap();
        assert_eq!(frame.height(), 0);
        let names: Vec<_> = frame
            .get_column_names()
            .iter()
            .map(|n| n.as_str())
            .collect();
        let expected: Vec<_> = ROUTING.columns.iter().map(|c| c.name).collect();
        assert_eq!(names, expected);
        assert_eq!(frame.column("split").unwrap().dtype(), &DataType::String);
        assert_eq!(frame.column("block").unwrap().dtype(), &DataType::Int32);
    }

    #[test]
    fn a_missing_log_names_its_directory_and_the_stages_writing_it() {
        let out = tempfile::tempdir().unwrap();
        let err = read_log(out.path(), &ROUTING).unwrap_err();
        let dir = out.path().join("routing");
        assert_eq!(
            err.to_string(),
            format!(
                "no `routing` log at {}: it is written by the train and eval stages; run one of them first",
                dir.display()
            )
        );
    }

    #[test]
    fn a_corrupt_part_is_an_error_naming_the_file() {
        let out = tempfile::tempdir().unwrap();
        let dir = EVAL.dir(out.path());
        std::fs::create_dir(&dir).unwrap();
        let part = dir.join("part-000000000001.parquet");
        std::fs::write(&part, b"not parquet").unwrap();
        let err = read_log(out.path(), &EVAL).unwrap_err();
        let prefix = format!("reading {}: ", part.display());
        assert!(err.to_string().starts_with(&prefix), "{err}");
    }
}
