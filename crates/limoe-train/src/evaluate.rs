//! Zero-shot classification, retrieval and few-shot probes of a model, as eval log rows and
//! CLIP_benchmark task metrics.

use std::collections::BTreeMap;

use candle_core::Device;
use limoe_core::logs::EvalRow;
use limoe_core::logs::eval_metrics::{
    ALL_DATASETS, CLASSIFICATION, RETRIEVAL_DIRECTIONS, RETRIEVAL_MEASURES, RETRIEVAL_PAIRS,
    ZERO_SHOT, few_shot_metric, retrieval_metric,
};
use limoe_core::spec::ProbeFeatures;
use limoe_data::batch::Preprocess;
use limoe_model::Model;

use crate::classes::ClassIndex;
use crate::clip_benchmark::{TaskMetrics, ZEROSHOT_CLASSIFICATION, ZEROSHOT_RETRIEVAL};
use crate::embed::{SplitEmbeddings, embed_texts};
use crate::eval::Matrix;
use crate::eval::few_shot::{ProbeConfig, few_shot_probe, sample_shots};
use crate::eval::retrieval::retrieval;
use crate::eval::zero_shot::{class_weights, prompts, zero_shot_accuracy};
use crate::labelled::Labelled;

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
    /// Prompts per forward pass.
    pub batch_size: usize,
}

/// Zero-shot top-1 / top-5 accuracy, mean per-class recall and chance of `set` (pairs of
/// `emb`) over its whole class list, with open_clip's prompt ensembling over `templates`.
pub fn zero_shot_rows(
    setup: &ZeroShotSetup,
    emb: &SplitEmbeddings,
    set: &Labelled,
    dataset: &str,
    templates: &[String],
    step: i64,
) -> anyhow::Result<(Vec<EvalRow>, TaskMetrics)> {
    let names = set.names();
    let prompts = prompts(&names, templates)?;
    let prompt_emb = embed_texts(
        setup.model,
        setup.device,
        setup.preprocess,
        &prompts,
        setup.batch_size,
    )?;
    let weights = class_weights(Matrix::new(&prompt_emb, emb.dim)?, names.len())?;
    let images = set.gather(&emb.image, emb.dim);
    let result = zero_shot_accuracy(
        Matrix::new(&images, emb.dim)?,
        Matrix::new(&weights, emb.dim)?,
        &set.labels,
    )?;
    let recall = result.mean_per_class_top1();
    let chance = 1.0 / names.len() as f64;
    let values = [result.top1, result.top5, recall, chance];
    let rows = (ZERO_SHOT.into_iter().zip(values))
        .map(|(metric, value)| row(step, dataset, metric, value))
        .collect();
    let metrics = [
        ("acc1", result.top1),
        ("acc5", result.top5),
        ("mean_per_class_recall", recall),
    ];
    let task = TaskMetrics {
        dataset: dataset.to_owned(),
        task: ZEROSHOT_CLASSIFICATION,
        metrics: metrics.map(|(k, v)| (k.to_owned(), v)).into(),
    };
    Ok((rows, task))
}

/// A classifier's top-1 accuracy over the pairs of `emb` (its class logits) that have one of
/// `labels`' classes, and chance, as rows of the `all` dataset (none without such pairs).
pub fn classification_rows(emb: &SplitEmbeddings, labels: &ClassIndex, step: i64) -> Vec<EvalRow> {
    let (mut hits, mut scored) = (0usize, 0usize);
    for (i, label) in emb.labels.iter().enumerate() {
        let Some(class) = labels.class_of(*label) else {
            continue;
        };
        let logits = &emb.image[i * emb.dim..(i + 1) * emb.dim];
        let best = (0..logits.len()).max_by(|&a, &b| logits[a].total_cmp(&logits[b]));
        scored += 1;
        hits += usize::from(best == Some(class as usize));
    }
    if scored == 0 {
        tracing::warn!("classification: no labelled pairs in the evaluated split");
        return Vec::new();
    }
    let values = [hits as f64 / scored as f64, 1.0 / labels.len() as f64];
    (CLASSIFICATION.into_iter().zip(values))
        .map(|(metric, value)| row(step, ALL_DATASETS, metric, value))
        .collect()
}

/// Image-text retrieval over the pairs of `emb`: R@1/5/10 and median rank, both directions,
/// and the number of pairs ranked (for the chance levels), as rows of the `all` dataset and as the CLIP_benchmark task of `dataset`; `None` with
/// fewer than 2 pairs.
pub fn retrieval_rows(
    emb: &SplitEmbeddings,
    dataset: &str,
    step: i64,
) -> anyhow::Result<Option<(Vec<EvalRow>, TaskMetrics)>> {
    if emb.len() < 2 {
        tracing::warn!("retrieval: the split has {} pairs, skipped", emb.len());
        return Ok(None);
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
    rows.push(row(
        step,
        ALL_DATASETS,
        RETRIEVAL_PAIRS,
        result.pairs as f64,
    ));
    // CLIP_benchmark's "image retrieval" is text -> image, its "text retrieval" image -> text.
    let (i2t, t2i) = (&result.image_to_text, &result.text_to_image);
    let mut metrics = BTreeMap::new();
    for (k, text, image) in [
        (1, i2t.r1, t2i.r1),
        (5, i2t.r5, t2i.r5),
        (10, i2t.r10, t2i.r10),
    ] {
        metrics.insert(format!("image_retrieval_recall@{k}"), image);
        metrics.insert(format!("text_retrieval_recall@{k}"), text);
    }
    let task = TaskMetrics {
        dataset: dataset.to_owned(),
        task: ZEROSHOT_RETRIEVAL,
        metrics,
    };
    Ok(Some((rows, task)))
}

/// The image features a probe fits, `[pairs, dim]`, and their dim.
fn features(emb: &SplitEmbeddings, kind: ProbeFeatures) -> (&[f32], usize) {
    match kind {
        ProbeFeatures::PreLogits => (&emb.pre_logits, emb.width),
        ProbeFeatures::Embedding => (&emb.image, emb.dim),
    }
}

/// One few-shot probe's inputs: where its shots come from and what scores it.
pub struct ProbeSets<'a> {
    /// The embeddings the shots are drawn from, and the dataset's pairs among them.
    pub pool: (&'a SplitEmbeddings, Labelled),
    /// The embeddings that score the probe, and the dataset's pairs among them.
    pub test: (&'a SplitEmbeddings, Labelled),
}

impl<'a> ProbeSets<'a> {
    /// Shots and test pairs from one set (a benchmark's own pairs): `shots` per class drawn
    /// with `seed` (stratified, so every class is present), the rest scoring the probe.
    /// `None` (with a warning) when a class has no more than `shots` pairs.
    pub fn split(
        emb: &'a SplitEmbeddings,
        set: Labelled,
        dataset: &str,
        shots: usize,
        seed: u64,
    ) -> anyhow::Result<Option<ProbeSets<'a>>> {
        let fewest = fewest_per_class(&set);
        if fewest <= shots {
            tracing::warn!(
                "few-shot `{dataset}`: a class has only {fewest} pairs, too few to draw {shots} \
                 shots and keep test pairs; probes skipped"
            );
            return Ok(None);
        }
        let picked = sample_shots(&set.labels, set.classes.len(), shots, seed)?;
        let mut is_shot = vec![false; set.rows.len()];
        picked.iter().for_each(|&p| is_shot[p] = true);
        let rest: Vec<usize> = (0..set.rows.len()).filter(|&p| !is_shot[p]).collect();
        Ok(Some(ProbeSets {
            pool: (emb, set.subset(&picked)),
            test: (emb, set.subset(&rest)),
        }))
    }
}

fn fewest_per_class(set: &Labelled) -> usize {
    let mut counts = vec![0usize; set.classes.len()];
    set.labels.iter().for_each(|&l| counts[l] += 1);
    counts.into_iter().min().unwrap_or(0)
}

/// Few-shot linear-probe accuracy of `dataset` at each shot count on `features`: shots from
/// the pool, accuracy on the test set. Shot counts that some class cannot supply are skipped
/// with a warning.
pub fn few_shot_rows(
    sets: &ProbeSets,
    dataset: &str,
    shots: &[usize],
    kind: ProbeFeatures,
    seed: u64,
    step: i64,
) -> anyhow::Result<Vec<EvalRow>> {
    let ((pool, pool_set), (test, test_set)) = (&sets.pool, &sets.test);
    if pool_set.classes != test_set.classes {
        tracing::warn!("few-shot `{dataset}`: the pool and test sets have different classes");
        return Ok(Vec::new());
    }
    let classes = pool_set.classes.len();
    let fewest = fewest_per_class(pool_set);
    let usable: Vec<usize> = shots.iter().copied().filter(|&s| s <= fewest).collect();
    if usable.len() < shots.len() {
        tracing::warn!(
            "few-shot `{dataset}`: a class has only {fewest} pool examples; shots above that \
             skipped"
        );
    }
    if usable.is_empty() || classes < 2 {
        return Ok(Vec::new());
    }
    let config = ProbeConfig {
        shots: usable,
        seed,
        ..ProbeConfig::default()
    };
    let (pool_values, dim) = features(pool, kind);
    let (test_values, _) = features(test, kind);
    let pool_x = pool_set.gather(pool_values, dim);
    let test_x = test_set.gather(test_values, dim);
    let results = few_shot_probe(
        Matrix::new(&pool_x, dim)?,
        &pool_set.labels,
        Matrix::new(&test_x, dim)?,
        &test_set.labels,
        classes,
        &config,
    )?;
    Ok(results
        .into_iter()
        .map(|r| row(step, dataset, &few_shot_metric(r.shots), r.accuracy))
        .collect())
}
