//! Results in CLIP_benchmark's JSON schema, one file per dataset and task, so that
//! `clip_benchmark build` can put limoe's rows beside open_clip's.

use std::collections::BTreeMap;
use std::path::Path;

use limoe_core::records::write_record;
use serde::{Deserialize, Serialize};

/// The eval output's folder of CLIP_benchmark files.
pub const CLIP_BENCHMARK_DIR: &str = "clip_benchmark";
/// CLIP_benchmark's task name for zero-shot classification.
pub const ZEROSHOT_CLASSIFICATION: &str = "zeroshot_classification";
/// CLIP_benchmark's task name for image-text retrieval.
pub const ZEROSHOT_RETRIEVAL: &str = "zeroshot_retrieval";
/// The language of every prompt and caption limoe evaluates.
const LANGUAGE: &str = "en";

/// What one task measured on one dataset, in CLIP_benchmark's metric names (`acc1`, `acc5`,
/// `mean_per_class_recall`; `image_retrieval_recall@k`, `text_retrieval_recall@k`).
#[derive(Clone, Debug, PartialEq)]
pub struct TaskMetrics {
    /// The dataset's name.
    pub dataset: String,
    /// The task.
    pub task: &'static str,
    /// Its metrics.
    pub metrics: BTreeMap<String, f64>,
}

/// One result file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ClipBenchmarkResult {
    /// The dataset.
    pub dataset: String,
    /// The model's name.
    pub model: String,
    /// The weights' name.
    pub pretrained: String,
    /// The task.
    pub task: String,
    /// The metrics.
    pub metrics: BTreeMap<String, f64>,
    /// The prompts' language.
    pub language: String,
}

impl ClipBenchmarkResult {
    /// The result of `task` for the model `model` with weights `pretrained`.
    pub fn new(task: &TaskMetrics, model: &str, pretrained: &str) -> ClipBenchmarkResult {
        ClipBenchmarkResult {
            dataset: task.dataset.clone(),
            model: model.to_owned(),
            pretrained: pretrained.to_owned(),
            task: task.task.to_owned(),
            metrics: task.metrics.clone(),
            language: LANGUAGE.to_owned(),
        }
    }

    /// CLIP_benchmark's file name, `{dataset}_{pretrained}_{model}_{language}_{task}.json`,
    /// with every `/` made `_` as its CLI does.
    pub fn file_name(&self) -> String {
        let name = [
            &self.dataset,
            &self.pretrained,
            &self.model,
            &self.language,
            &self.task,
        ]
        .map(|part| part.replace('/', "_"))
        .join("_");
        format!("{name}.json")
    }
}

/// Writes each result under `dir/clip_benchmark/` (each file atomically).
pub fn write_results(dir: &Path, results: &[ClipBenchmarkResult]) -> anyhow::Result<()> {
    let folder = dir.join(CLIP_BENCHMARK_DIR);
    std::fs::create_dir_all(&folder)?;
    for result in results {
        write_record(&folder, &result.file_name(), result)?;
    }
    Ok(())
}
