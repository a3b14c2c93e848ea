//! Zero-shot classification, retrieval and few-shot probes of a model, as eval log rows.

use std::collections::{BTreeMap, BTreeSet};

use candle_core::Device;
use limoe_core::logs::EvalRow;
use limoe_core::logs::eval_metrics::{
    ALL_DATASETS, RETRIEVAL_DIRECTIONS, RETRIEVAL_MEASURES, ZERO_SHOT, few_shot_metric,
    retrieval_metric,
};
use limoe_core::records::ClassName;
use limoe_core::spec::EvalDataset;
use limoe_data::batch::Preprocess;
use limoe_model::Model;

use crate::embed::{SplitEmbeddings, embed_texts};
use crate::eval::Matrix;
use crate::eval::few_shot::{ProbeConfig, few_shot_probe};
use crate::eval::retrieval::retrieval;
use crate::eval::zero_shot::{class_weights, prompts, zero_shot_accuracy};

/// The labelled pairs of one dataset within a split's embeddings.
struct Labelled {
    class_names: Vec<String>,
    rows: Vec<usize>,
    labels: Vec<usize>,
}

/// The class names of every labelled class of `datasets` in `emb`, by dataset and label.
pub fn class_names(emb: &SplitEmbeddings, datasets: &[EvalDataset]) -> Vec<ClassName> {
    let mut classes = BTreeSet::new();
    for &dataset in datasets {
        for i in 0..emb.len() {
            if let (true, Some(label), Some(name)) = (
                emb.keys[i].starts_with(dataset.name()),
                emb.labels[i],
                &emb.label_names[i],
            ) {
                classes.insert(ClassName {
                    dataset: dataset.name().to_owned(),
                    label,
                    name: name.clone(),
                });
            }
        }
    }
    classes.into_iter().collect()
}

/// Pairs whose key starts with the dataset's name and that carry a label and a class name;
/// `None` when there are none.
fn labelled(emb: &SplitEmbeddings, dataset: EvalDataset) -> Option<Labelled> {
    let mut names = BTreeMap::new();
    let mut rows = Vec::new();
    for i in 0..emb.len() {
        if let (true, Some(label), Some(name)) = (
            emb.keys[i].starts_with(dataset.name()),
            emb.labels[i],
            &emb.label_names[i],
        ) {
            names.entry(label).or_insert_with(|| name.clone());
            rows.push(i);
        }
    }
    if rows.is_empty() {
        return None;
    }
    let index: BTreeMap<i32, usize> = names.keys().enumerate().map(|(i, &l)| (l, i)).collect();
    let labels = rows
        .iter()
        .map(|&i| emb.labels[i].map_or(0, |l| index[&l]))
        .collect();
    Some(Labelled {
        class_names: names.into_values().collect(),
        rows,
        labels,
    })
}

fn gather(values: &[f32], rows: &[usize], dim: usize) -> Vec<f32> {
    rows.iter()
        .flat_map(|&r| values[r * dim..(r + 1) * dim].iter().copied())
        .collect()
}

fn row(step: i64, dataset: &str, metric: &str, value: f64) -> EvalRow {
    EvalRow {
        step,
        dataset: dataset.to_string(),
        metric: metric.to_string(),
        value,
    }
}

/// Everything zero-shot classification needs besides the images.
pub struct ZeroShotSetup<'a> {
    /// The model that embeds the prompts.
    pub model: &'a Model,
    /// Its device.
    pub device: &'a Device,
    /// Its tokenizer and image preprocessing.
    pub preprocess: &'a Preprocess,
    /// Prompt templates with `{}`.
    pub templates: &'a [String],
    /// Prompts per forward pass.
    pub batch_size: usize,
}

/// Zero-shot top-1 / top-5 accuracy per dataset (open_clip's prompt ensembling). Datasets
/// without labelled pairs in the split are skipped with a warning.
pub fn zero_shot_rows(
    setup: &ZeroShotSetup,
    emb: &SplitEmbeddings,
    datasets: &[EvalDataset],
    step: i64,
) -> anyhow::Result<Vec<EvalRow>> {
    let mut rows = Vec::new();
    for &dataset in datasets {
        let Some(set) = labelled(emb, dataset) else {
            tracing::warn!(
                "zero-shot: no labelled `{}` pairs in this split; add the source to data.sources",
                dataset.name()
            );
            continue;
        };
        let prompts = prompts(&set.class_names, setup.templates)?;
        let prompt_emb = embed_texts(
            setup.model,
            setup.device,
            setup.preprocess,
            &prompts,
            setup.batch_size,
        )?;
        let weights = class_weights(Matrix::new(&prompt_emb, emb.dim)?, set.class_names.len())?;
        let images = gather(&emb.image, &set.rows, emb.dim);
        let result = zero_shot_accuracy(
            Matrix::new(&images, emb.dim)?,
            Matrix::new(&weights, emb.dim)?,
            &set.labels,
        )?;
        let chance = 1.0 / set.class_names.len() as f64;
        for (metric, value) in ZERO_SHOT
            .into_iter()
            .zip([result.top1, result.top5, chance])
        {
            rows.push(row(step, dataset.name(), metric, value));
        }
    }
    Ok(rows)
}

/// Image-text retrieval over the split's pairs: R@1/5/10 and median rank, both directions.
pub fn retrieval_rows(emb: &SplitEmbeddings, step: i64) -> anyhow::Result<Vec<EvalRow>> {
    if emb.len() < 2 {
        tracing::warn!("retrieval: the split has {} pairs, skipped", emb.len());
        return Ok(Vec::new());
    }
    let result = retrieval(
        Matrix::new(&emb.image, emb.dim)?,
        Matrix::new(&emb.text, emb.dim)?,
    )?;
    let mut rows = Vec::new();
    let directions = [&result.image_to_text, &result.text_to_image];
    for (direction, recall) in RETRIEVAL_DIRECTIONS.into_iter().zip(directions) {
        let measures = [recall.r1, recall.r5, recall.r10, recall.median_rank];
        for (measure, value) in RETRIEVAL_MEASURES.into_iter().zip(measures) {
            let metric = retrieval_metric(direction, measure);
            rows.push(row(step, ALL_DATASETS, &metric, value));
        }
    }
    Ok(rows)
}

/// Few-shot linear-probe accuracy per dataset and shot count: shots drawn from `pool`,
/// accuracy on `test`. Shot counts that some class cannot supply are skipped with a warning.
pub fn few_shot_rows(
    pool: &SplitEmbeddings,
    test: &SplitEmbeddings,
    datasets: &[EvalDataset],
    shots: &[usize],
    seed: u64,
    step: i64,
) -> anyhow::Result<Vec<EvalRow>> {
    let mut rows = Vec::new();
    for &dataset in datasets {
        let (Some(pool_set), Some(test_set)) = (labelled(pool, dataset), labelled(test, dataset))
        else {
            tracing::warn!("few-shot: no labelled `{}` pairs to probe", dataset.name());
            continue;
        };
        if pool_set.class_names != test_set.class_names {
            tracing::warn!(
                "few-shot `{}`: the pool and test splits have different classes, skipped",
                dataset.name()
            );
            continue;
        }
        let classes = pool_set.class_names.len();
        let fewest = (0..classes)
            .map(|c| pool_set.labels.iter().filter(|&&l| l == c).count())
            .min()
            .unwrap_or(0);
        let usable: Vec<usize> = shots.iter().copied().filter(|&s| s <= fewest).collect();
        if usable.len() < shots.len() {
            tracing::warn!(
                "few-shot `{}`: a class has only {fewest} pool examples; shots above that skipped",
                dataset.name()
            );
        }
        if usable.is_empty() || classes < 2 {
            continue;
        }
        let config = ProbeConfig {
            shots: usable,
            seed,
            ..ProbeConfig::default()
        };
        let pool_x = gather(&pool.image, &pool_set.rows, pool.dim);
        let test_x = gather(&test.image, &test_set.rows, test.dim);
        for result in few_shot_probe(
            Matrix::new(&pool_x, pool.dim)?,
            &pool_set.labels,
            Matrix::new(&test_x, test.dim)?,
            &test_set.labels,
            classes,
            &config,
        )? {
            let metric = few_shot_metric(result.shots);
            rows.push(row(step, dataset.name(), &metric, result.accuracy));
        }
    }
    Ok(rows)
}
