//! The [`LogRow`] conversions between the core row structs and Arrow batches.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use arrow_array::{
    Array, ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
};
use limoe_core::logs::{
    ASSIGNMENTS, AssignmentRow, EVAL, EvalRow, LogSchema, METRICS, MetricsRow, Modality, ROUTING,
    RoutingRow,
};

use super::columns::{Columns, build_batch};

/// A row of one run log: which log it belongs to and how rows map to Arrow batches.
pub trait LogRow: Clone + std::fmt::Debug + Sized {
    /// The log's schema.
    const LOG: &'static LogSchema;

    /// The step the row was recorded at.
    fn step(&self) -> i64;

    /// The rows as one batch with the log's Arrow schema.
    fn to_batch(rows: &[Self]) -> anyhow::Result<RecordBatch>;

    /// The rows of a batch read from `file` (named in errors).
    fn from_batch(batch: &RecordBatch, file: &Path) -> anyhow::Result<Vec<Self>>;
}

fn i64s<R>(rows: &[R], f: impl Fn(&R) -> i64) -> ArrayRef {
    Arc::new(Int64Array::from_iter_values(rows.iter().map(f)))
}

fn i32s<R>(rows: &[R], f: impl Fn(&R) -> i32) -> ArrayRef {
    Arc::new(Int32Array::from_iter_values(rows.iter().map(f)))
}

fn f64s<R>(rows: &[R], f: impl Fn(&R) -> f64) -> ArrayRef {
    Arc::new(Float64Array::from_iter_values(rows.iter().map(f)))
}

fn strs<R>(rows: &[R], f: impl Fn(&R) -> &str) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(rows.iter().map(f)))
}

fn modalities(columns: &Columns, name: &str) -> anyhow::Result<Vec<Modality>> {
    columns
        .utf8(name)?
        .iter()
        .enumerate()
        .map(|(i, value)| {
            let value = value.unwrap_or_default();
            Modality::from_name(value).with_context(|| {
                format!(
                    "{}: column `{name}`, row {i}: unknown modality `{value}` (image or text)",
                    columns.file().display()
                )
            })
        })
        .collect()
}

type Getter = fn(&MetricsRow) -> f64;
type Setter = fn(&mut MetricsRow, f64);

/// Every f64 column of [`METRICS`] with its field.
const METRIC_VALUES: [(&str, Getter, Setter); 18] = [
    (
        "wall_seconds",
        |r| r.wall_seconds,
        |r, v| r.wall_seconds = v,
    ),
    ("lr", |r| r.lr, |r, v| r.lr = v),
    ("loss", |r| r.loss, |r, v| r.loss = v),
    ("contrastive", |r| r.contrastive, |r, v| r.contrastive = v),
    ("aux", |r| r.aux, |r, v| r.aux = v),
    (
        "local_entropy_image",
        |r| r.local_entropy_image,
        |r, v| r.local_entropy_image = v,
    ),
    (
        "local_entropy_text",
        |r| r.local_entropy_text,
        |r, v| r.local_entropy_text = v,
    ),
    (
        "global_entropy_image",
        |r| r.global_entropy_image,
        |r, v| r.global_entropy_image = v,
    ),
    (
        "global_entropy_text",
        |r| r.global_entropy_text,
        |r, v| r.global_entropy_text = v,
    ),
    (
        "importance_image",
        |r| r.importance_image,
        |r, v| r.importance_image = v,
    ),
    (
        "importance_text",
        |r| r.importance_text,
        |r, v| r.importance_text = v,
    ),
    ("load_image", |r| r.load_image, |r, v| r.load_image = v),
    ("load_text", |r| r.load_text, |r, v| r.load_text = v),
    (
        "z_loss_image",
        |r| r.z_loss_image,
        |r, v| r.z_loss_image = v,
    ),
    ("z_loss_text", |r| r.z_loss_text, |r, v| r.z_loss_text = v),
    ("grad_norm", |r| r.grad_norm, |r, v| r.grad_norm = v),
    ("logit_scale", |r| r.logit_scale, |r, v| r.logit_scale = v),
    (
        "pairs_per_second",
        |r| r.pairs_per_second,
        |r, v| r.pairs_per_second = v,
    ),
];

impl LogRow for MetricsRow {
    const LOG: &'static LogSchema = &METRICS;

    fn step(&self) -> i64 {
        self.step
    }

    fn to_batch(rows: &[Self]) -> anyhow::Result<RecordBatch> {
        let mut named = vec![("step", i64s(rows, |r| r.step))];
        named.extend(
            METRIC_VALUES
                .iter()
                .map(|&(name, get, _)| (name, f64s(rows, get))),
        );
        build_batch(Self::LOG, named)
    }

    fn from_batch(batch: &RecordBatch, file: &Path) -> anyhow::Result<Vec<Self>> {
        let c = Columns::new(batch, Self::LOG, file);
        let mut rows: Vec<MetricsRow> = (c.i64("step")?.values().iter())
            .map(|&step| MetricsRow {
                step,
                ..MetricsRow::default()
            })
            .collect();
        for (name, _, set) in METRIC_VALUES {
            for (row, &value) in rows.iter_mut().zip(c.f64(name)?.values()) {
                set(row, value);
            }
        }
        Ok(rows)
    }
}

impl LogRow for RoutingRow {
    const LOG: &'static LogSchema = &ROUTING;

    fn step(&self) -> i64 {
        self.step
    }

    fn to_batch(rows: &[Self]) -> anyhow::Result<RecordBatch> {
        build_batch(
            Self::LOG,
            vec![
                ("step", i64s(rows, |r| r.step)),
                ("split", strs(rows, |r| &r.split)),
                ("block", i32s(rows, |r| r.block)),
                ("modality", strs(rows, |r| r.modality.name())),
                ("expert", i32s(rows, |r| r.expert)),
                ("tokens", i64s(rows, |r| r.tokens)),
                ("dropped", i64s(rows, |r| r.dropped)),
                ("mean_gate", f64s(rows, |r| r.mean_gate)),
                ("local_entropy", f64s(rows, |r| r.local_entropy)),
                ("global_entropy", f64s(rows, |r| r.global_entropy)),
            ],
        )
    }

    fn from_batch(batch: &RecordBatch, file: &Path) -> anyhow::Result<Vec<Self>> {
        let c = Columns::new(batch, Self::LOG, file);
        let (step, split, block) = (c.i64("step")?, c.utf8("split")?, c.i32("block")?);
        let modality = modalities(&c, "modality")?;
        let (expert, tokens, dropped) = (c.i32("expert")?, c.i64("tokens")?, c.i64("dropped")?);
        let mean_gate = c.f64("mean_gate")?;
        let (local, global) = (c.f64("local_entropy")?, c.f64("global_entropy")?);
        Ok((0..batch.num_rows())
            .map(|i| RoutingRow {
                step: step.value(i),
                split: split.value(i).to_owned(),
                block: block.value(i),
                modality: modality[i],
                expert: expert.value(i),
                tokens: tokens.value(i),
                dropped: dropped.value(i),
                mean_gate: mean_gate.value(i),
                local_entropy: local.value(i),
                global_entropy: global.value(i),
            })
            .collect())
    }
}

impl LogRow for EvalRow {
    const LOG: &'static LogSchema = &EVAL;

    fn step(&self) -> i64 {
        self.step
    }

    fn to_batch(rows: &[Self]) -> anyhow::Result<RecordBatch> {
        build_batch(
            Self::LOG,
            vec![
                ("step", i64s(rows, |r| r.step)),
                ("dataset", strs(rows, |r| &r.dataset)),
                ("metric", strs(rows, |r| &r.metric)),
                ("value", f64s(rows, |r| r.value)),
            ],
        )
    }

    fn from_batch(batch: &RecordBatch, file: &Path) -> anyhow::Result<Vec<Self>> {
        let c = Columns::new(batch, Self::LOG, file);
        let (step, dataset) = (c.i64("step")?, c.utf8("dataset")?);
        let (metric, value) = (c.utf8("metric")?, c.f64("value")?);
        Ok((0..batch.num_rows())
            .map(|i| EvalRow {
                step: step.value(i),
                dataset: dataset.value(i).to_owned(),
                metric: metric.value(i).to_owned(),
                value: value.value(i),
            })
            .collect())
    }
}

impl LogRow for AssignmentRow {
    const LOG: &'static LogSchema = &ASSIGNMENTS;

    fn step(&self) -> i64 {
        self.step
    }

    fn to_batch(rows: &[Self]) -> anyhow::Result<RecordBatch> {
        let labels: ArrayRef = Arc::new(Int32Array::from_iter(rows.iter().map(|r| r.label)));
        build_batch(
            Self::LOG,
            vec![
                ("step", i64s(rows, |r| r.step)),
                ("key", strs(rows, |r| &r.key)),
                ("label", labels),
                ("modality", strs(rows, |r| r.modality.name())),
                ("block", i32s(rows, |r| r.block)),
                ("position", i32s(rows, |r| r.position)),
                ("choice", i32s(rows, |r| r.choice)),
                ("expert", i32s(rows, |r| r.expert)),
            ],
        )
    }

    fn from_batch(batch: &RecordBatch, file: &Path) -> anyhow::Result<Vec<Self>> {
        let c = Columns::new(batch, Self::LOG, file);
        let (step, key, label) = (c.i64("step")?, c.utf8("key")?, c.i32("label")?);
        let modality = modalities(&c, "modality")?;
        let (block, position) = (c.i32("block")?, c.i32("position")?);
        let (choice, expert) = (c.i32("choice")?, c.i32("expert")?);
        Ok((0..batch.num_rows())
            .map(|i| AssignmentRow {
                step: step.value(i),
                key: key.value(i).to_owned(),
                label: label.is_valid(i).then(|| label.value(i)),
                modality: modality[i],
                block: block.value(i),
                position: position.value(i),
                choice: choice.value(i),
                expert: expert.value(i),
            })
            .collect())
    }
}
