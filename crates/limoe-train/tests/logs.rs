//! Run logs: round trips, parts per flush, truncation for resume, and clear errors.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use limoe_core::logs::{
    ALL_LOGS, AssignmentRow, EVAL, EvalRow, LogRow, LogSchema, METRICS, MetricsRow, Modality,
    RoutingRow, part_files,
};
use limoe_train::logs::{LogWriter, RunLogs, arrow_type, read_log};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

fn metrics(step: i64) -> MetricsRow {
    let x = step as f64;
    MetricsRow {
        step,
        wall_seconds: 0.5 * x,
        lr: 1e-3 / (1.0 + x),
        loss: 2.0 + x,
        contrastive: 1.5 + x,
        classification: 0.25,
        aux: 0.5,
        local_entropy_image: 0.1,
        local_entropy_text: 0.2,
        global_entropy_image: 0.3,
        global_entropy_text: 0.4,
        importance_image: 0.5,
        importance_text: 0.6,
        load_image: 0.7,
        load_text: 0.8,
        importance_joint: 0.85,
        load_joint: 0.87,
        z_loss_image: 0.9,
        z_loss_text: 1.0,
        grad_norm: 1.1 * x,
        logit_scale: 14.3,
        pairs_per_second: 100.0 + x,
    }
}

fn routing(step: i64) -> Vec<RoutingRow> {
    let mut rows = Vec::new();
    for modality in [Modality::Image, Modality::Text] {
        for expert in 0..2 {
            rows.push(RoutingRow {
                step,
                split: "train".into(),
                block: 1,
                modality,
                expert,
                tokens: 10 * step + i64::from(expert),
                dropped: 3,
                mean_gate: 0.25 * f64::from(expert + 1),
                local_entropy: 0.6,
                global_entropy: 0.69,
            });
        }
    }
    rows
}

fn eval(step: i64, metric: &str) -> EvalRow {
    EvalRow {
        step,
        dataset: "synthetic".into(),
        metric: metric.into(),
        value: step as f64 / 100.0,
    }
}

fn assignments(step: i64) -> Vec<AssignmentRow> {
    (0..4)
        .map(|i| AssignmentRow {
            step,
            key: format!("pair-{i}"),
            label: (i % 2 == 0).then_some(i),
            modality: if i < 2 {
                Modality::Image
            } else {
                Modality::Text
            },
            block: 3,
            position: i,
            choice: 0,
            expert: i % 5,
        })
        .collect()
}

fn write_flushes<R: LogRow>(out: &Path, flushes: &[Vec<R>]) -> LogWriter<R> {
    let mut writer = LogWriter::<R>::create(out).unwrap();
    for rows in flushes {
        writer.extend(rows.iter().cloned());
        writer.flush().unwrap();
    }
    writer
}

fn file_names(dir: &Path) -> Vec<String> {
    part_files(dir)
        .unwrap()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn every_log_round_trips() {
    let out = tempfile::tempdir().unwrap();
    let mut logs = RunLogs::create(out.path()).unwrap();
    let m: Vec<_> = (0..3).map(metrics).collect();
    let r = routing(7);
    let e = vec![eval(7, "zero_shot_top1"), eval(7, "retrieval_i2t_r1")];
    let a = assignments(7);
    logs.metrics.extend(m.clone());
    logs.routing.extend(r.clone());
    logs.eval.extend(e.clone());
    logs.assignments.extend(a.clone());
    assert_eq!(logs.flush().unwrap().len(), 4);
    assert_eq!(logs.metrics.pending(), 0);
    assert_eq!(read_log::<MetricsRow>(out.path()).unwrap(), m);
    assert_eq!(read_log::<RoutingRow>(out.path()).unwrap(), r);
    assert_eq!(read_log::<EvalRow>(out.path()).unwrap(), e);
    assert_eq!(read_log::<AssignmentRow>(out.path()).unwrap(), a);
    assert!(logs.flush().unwrap().is_empty());
}

#[test]
fn each_flush_writes_a_part_and_rows_read_back_in_step_order() {
    let out = tempfile::tempdir().unwrap();
    let flushes = vec![
        vec![metrics(1), metrics(2)],
        vec![metrics(30), metrics(40)],
        vec![metrics(5), metrics(3)],
    ];
    let writer = write_flushes(out.path(), &flushes);
    assert_eq!(
        file_names(writer.dir()),
        [
            "part-000000000001.parquet",
            "part-000000000003.parquet",
            "part-000000000030.parquet"
        ]
    );
    let steps: Vec<i64> = read_log::<MetricsRow>(out.path())
        .unwrap()
        .iter()
        .map(|r| r.step)
        .collect();
    assert_eq!(steps, [1, 2, 3, 5, 30, 40]);
}

#[test]
fn a_second_flush_at_the_same_first_step_extends_that_part() {
    let out = tempfile::tempdir().unwrap();
    let writer = write_flushes(
        out.path(),
        &[vec![eval(5, "a")], vec![eval(5, "b"), eval(6, "c")]],
    );
    assert_eq!(file_names(writer.dir()), ["part-000000000005.parquet"]);
    let metrics: Vec<String> = read_log::<EvalRow>(out.path())
        .unwrap()
        .into_iter()
        .map(|r| r.metric)
        .collect();
    assert_eq!(metrics, ["a", "b", "c"]);
}

#[test]
fn a_negative_step_is_refused_and_the_rows_stay_buffered() {
    let out = tempfile::tempdir().unwrap();
    let mut writer = LogWriter::<EvalRow>::create(out.path()).unwrap();
    writer.push(eval(-1, "a"));
    let err = format!("{:#}", writer.flush().unwrap_err());
    assert!(err.contains("negative step -1"), "{err}");
    assert_eq!(writer.pending(), 1);
}

#[test]
fn resume_drops_exactly_the_rows_after_the_checkpoint() {
    let uninterrupted: Vec<MetricsRow> = (1..=9).map(metrics).collect();
    let out = tempfile::tempdir().unwrap();
    // Parts [1..3], [4..6], [7..8]; the run dies after step 8 with its checkpoint at 5.
    let flushes: Vec<Vec<MetricsRow>> = [1..=3, 4..=6, 7..=8]
        .into_iter()
        .map(|steps| steps.map(metrics).collect())
        .collect();
    write_flushes(out.path(), &flushes);
    let mut writer = LogWriter::<MetricsRow>::resume(out.path(), 5).unwrap();
    assert_eq!(
        file_names(writer.dir()),
        ["part-000000000001.parquet", "part-000000000004.parquet"]
    );
    assert_eq!(
        read_log::<MetricsRow>(out.path()).unwrap(),
        uninterrupted[..5]
    );
    writer.extend((6..=9).map(metrics));
    writer.flush().unwrap();
    assert_eq!(read_log::<MetricsRow>(out.path()).unwrap(), uninterrupted);
}

#[test]
fn resume_keeps_every_row_of_the_checkpoint_step() {
    let out = tempfile::tempdir().unwrap();
    write_flushes(out.path(), &[routing(4), [routing(5), routing(6)].concat()]);
    LogWriter::<RoutingRow>::resume(out.path(), 5).unwrap();
    let rows = read_log::<RoutingRow>(out.path()).unwrap();
    assert_eq!(rows, [routing(4), routing(5)].concat());
    LogWriter::<RoutingRow>::resume(out.path(), 0).unwrap();
    assert_eq!(read_log::<RoutingRow>(out.path()).unwrap(), []);
}

#[test]
fn create_starts_from_nothing() {
    let out = tempfile::tempdir().unwrap();
    write_flushes(out.path(), &[assignments(3)]);
    LogWriter::<AssignmentRow>::create(out.path()).unwrap();
    assert_eq!(read_log::<AssignmentRow>(out.path()).unwrap(), []);
}

#[test]
fn orphan_temporary_files_are_ignored_and_cleared_on_resume() {
    let out = tempfile::tempdir().unwrap();
    let writer = write_flushes(out.path(), &[vec![eval(1, "a")]]);
    let orphan = writer.dir().join(".tmpXk3a9Q");
    std::fs::write(&orphan, b"PAR1 half a part").unwrap();
    assert_eq!(read_log::<EvalRow>(out.path()).unwrap(), [eval(1, "a")]);
    LogWriter::<EvalRow>::resume(out.path(), 1).unwrap();
    assert!(!orphan.exists());
    assert_eq!(read_log::<EvalRow>(out.path()).unwrap(), [eval(1, "a")]);
}

fn error_of<R: LogRow>(out: &Path) -> String {
    format!("{:#}", read_log::<R>(out).unwrap_err())
}

#[test]
fn a_corrupt_part_is_an_error_naming_it() {
    let out = tempfile::tempdir().unwrap();
    let writer = write_flushes(out.path(), &[vec![metrics(1)]]);
    let bad = writer.dir().join("part-000000000002.parquet");
    std::fs::write(&bad, b"not parquet at all").unwrap();
    let err = error_of::<MetricsRow>(out.path());
    assert!(err.contains(&bad.display().to_string()), "{err}");
    assert!(err.contains("not a readable Parquet file"), "{err}");
    let err = format!(
        "{:#}",
        LogWriter::<MetricsRow>::resume(out.path(), 5).unwrap_err()
    );
    assert!(err.contains(&bad.display().to_string()), "{err}");
}

/// Writes a one-row eval part at `path` with the given `value` column, if any.
fn write_eval_part(path: &Path, value: Option<(DataType, ArrayRef)>) {
    let mut fields = vec![
        Field::new("step", DataType::Int64, false),
        Field::new("dataset", DataType::Utf8, false),
        Field::new("metric", DataType::Utf8, false),
    ];
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(vec![1])),
        Arc::new(StringArray::from(vec!["d"])),
        Arc::new(StringArray::from(vec!["m"])),
    ];
    if let Some((ty, array)) = value {
        fields.push(Field::new("value", ty, false));
        columns.push(array);
    }
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
    let mut writer = ArrowWriter::try_new(File::create(path).unwrap(), schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

#[test]
fn a_missing_log_or_column_is_an_error_naming_it() {
    let out = tempfile::tempdir().unwrap();
    let dir = EVAL.dir(out.path());
    let err = error_of::<EvalRow>(out.path());
    assert!(err.contains("log `eval` not found"), "{err}");
    assert!(err.contains(&dir.display().to_string()), "{err}");

    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("part-000000000001.parquet");
    write_eval_part(&path, None);
    let err = error_of::<EvalRow>(out.path());
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("no column `value`"), "{err}");

    let text = Arc::new(StringArray::from(vec!["0.5"]));
    write_eval_part(&path, Some((DataType::Utf8, text)));
    let err = error_of::<EvalRow>(out.path());
    assert!(
        err.contains("column `value` is Utf8, expected Float64"),
        "{err}"
    );

    let number = Arc::new(Float64Array::from(vec![0.5]));
    write_eval_part(&path, Some((DataType::Float64, number)));
    assert_eq!(read_log::<EvalRow>(out.path()).unwrap().len(), 1);
}

/// The Arrow schema of the first part of `log`, as (name, type, nullable).
fn written_schema(out: &Path, log: &LogSchema) -> Vec<(String, DataType, bool)> {
    let part = &part_files(&log.dir(out)).unwrap()[0];
    let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(part).unwrap()).unwrap();
    builder
        .schema()
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone(), f.is_nullable()))
        .collect()
}

#[test]
fn written_files_match_the_core_schemas() {
    let out = tempfile::tempdir().unwrap();
    let mut logs = RunLogs::create(out.path()).unwrap();
    logs.metrics.push(metrics(1));
    logs.routing.extend(routing(1));
    logs.eval.push(eval(1, "m"));
    logs.assignments.extend(assignments(1));
    logs.flush().unwrap();
    for log in ALL_LOGS {
        let expected: Vec<_> = log
            .columns
            .iter()
            .map(|c| (c.name.to_owned(), arrow_type(c.ty), c.nullable))
            .collect();
        assert_eq!(written_schema(out.path(), log), expected, "{}", log.name);
    }
    assert_eq!(METRICS.columns.len(), 22);
}
