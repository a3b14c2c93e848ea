//! Small JSON records that stages leave beside their logs for analysis to read: the model's
//! cost (train), the class names of the labels (eval) and the evaluation summary (eval).
//! Analysis reads these and the Parquet logs, never the trainer's internals.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::files::write_atomic;

/// The train stage's record of what the model costs.
pub const PLAN_FILE: &str = "plan.json";
/// The eval stage's class names of the labels in its assignments log.
pub const CLASSES_FILE: &str = "classes.json";
/// The eval stage's final scores: `"<dataset>/<metric>"` -> value.
pub const SUMMARY_FILE: &str = "summary.json";

/// The eval summary: `"<dataset>/<metric>"` (e.g. `synthetic/zero_shot_top1`) -> value.
pub type EvalSummary = BTreeMap<String, f64>;

/// What training the spec's model costs, as `limoe plan` shows it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct PlanRecord {
    /// Every trainable scalar.
    pub total_params: u64,
    /// Parameters one token meets (top-K experts, not all).
    pub active_params: u64,
    /// FLOPs of one forward and backward pass over a training batch.
    pub step_flops: f64,
    /// Weights, gradients and optimiser moments, in bytes.
    pub state_bytes: u64,
    /// Activations kept for the backward pass of one micro-batch, in bytes.
    pub activation_bytes: u64,
    /// The plan in words, one line each.
    pub lines: Vec<String>,
}

/// The name of one class of one evaluation dataset.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct ClassName {
    /// The dataset (source) whose examples' keys start with `<dataset>/`.
    pub dataset: String,
    /// The label id in the logs.
    pub label: i32,
    /// What the class is called ("red circle").
    pub name: String,
}

/// Writes `record` as pretty JSON to `dir/file`, atomically.
pub fn write_record(dir: &Path, file: &str, record: &impl Serialize) -> anyhow::Result<()> {
    write_atomic(
        &dir.join(file),
        serde_json::to_string_pretty(record)?.as_bytes(),
    )
}

/// Reads the JSON record `dir/file`; `None` when the file does not exist.
pub fn read_record<T: DeserializeOwned>(dir: &Path, file: &str) -> anyhow::Result<Option<T>> {
    let path = dir.join(file);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    serde_json::from_str(&text).map(Some).with_context(|| {
        format!(
            "{} is not a valid record; rerun the stage that wrote it",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_a_missing_one_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let classes = vec![ClassName {
            dataset: "synthetic".into(),
            label: 3,
            name: "red circle".into(),
        }];
        write_record(dir.path(), CLASSES_FILE, &classes).unwrap();
        let back: Option<Vec<ClassName>> = read_record(dir.path(), CLASSES_FILE).unwrap();
        assert_eq!(back, Some(classes));
        let missing: Option<PlanRecord> = read_record(dir.path(), PLAN_FILE).unwrap();
        assert_eq!(missing, None);
        std::fs::write(dir.path().join(PLAN_FILE), "{").unwrap();
        let err = read_record::<PlanRecord>(dir.path(), PLAN_FILE).unwrap_err();
        assert!(format!("{err:#}").contains("plan.json"), "{err:#}");
    }
}
