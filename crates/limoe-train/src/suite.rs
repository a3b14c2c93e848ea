//! The evaluation suite: one split embedded once, then zero-shot classification, retrieval
//! and (optionally) few-shot probes on it and on the held-out benchmarks, with the routing it
//! took; a classifier's own top-1 accuracy in place of zero-shot and retrieval. Both the
//! periodic evaluation during training and the `eval` stage run it; only their settings
//! differ (the periodic one has no benchmarks).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use limoe_core::logs::{AssignmentRow, EvalRow, RoutingRow};
use limoe_core::records::ClassName;
use limoe_core::spec::{FewShot, Retrieval, ZeroShot};
use limoe_data::benchmarks::BenchmarkClasses;
use limoe_data::shards::Index;
use limoe_data::split::Split;

use limoe_model::moe::RouteMode;

use crate::classes::ClassIndex;
use crate::clip_benchmark::TaskMetrics;
use crate::embed::{EmbedRequest, SplitEmbeddings, embed_split};
use crate::evaluate::{
    ProbeSets, ZeroShotSetup, classification_rows, few_shot_rows, retrieval_rows, zero_shot_rows,
};
use crate::labelled::Labelled;
use crate::model_build::Built;
use crate::probe_pool::draw_pool;
use crate::routing_log::RoutingTally;

/// Few-shot linear probes: shots drawn from a stratified sample of the training pairs, or
/// from a benchmark's own pairs.
pub struct Probes<'a> {
    /// Shot counts, datasets and features.
    pub settings: &'a FewShot,
    /// Seed of the shots' draw.
    pub seed: u64,
}

/// What one run of the suite measures.
pub struct Suite<'a> {
    /// A classifier's classes, for its own top-1 accuracy on the split (`None`: a
    /// contrastive model, which classifies zero-shot).
    pub labels: Option<&'a ClassIndex>,
    /// How every image pass routes: the spec's evaluation routing, or an inference capacity.
    pub mode: RouteMode,
    /// The split evaluated.
    pub split: Split,
    /// At most this many of its pairs (and of each benchmark's), in file order.
    pub pairs: usize,
    /// Pairs per forward pass.
    pub batch_size: usize,
    /// Zero-shot classification.
    pub zero_shot: &'a ZeroShot,
    /// Image-text retrieval.
    pub retrieval: &'a Retrieval,
    /// Few-shot probes, when wanted.
    pub few_shot: Option<Probes<'a>>,
    /// Collect every token's expert, logged at the suite's step.
    pub assignments: bool,
    /// The benchmarks' dataset directories, by name.
    pub benchmarks: BTreeMap<String, PathBuf>,
    /// The name of the training data, for its retrieval results.
    pub data_name: String,
}

/// What the suite measured at one step.
pub struct SuiteResult {
    /// Metric rows.
    pub rows: Vec<EvalRow>,
    /// The same measurements per dataset and task, in CLIP_benchmark's terms.
    pub tasks: Vec<TaskMetrics>,
    /// Routing statistics of the evaluated split, labelled with the split's name.
    pub routing: Vec<RoutingRow>,
    /// Per-token expert assignments (empty unless asked for).
    pub assignments: Vec<AssignmentRow>,
    /// The classes of the zero-shot datasets of the training data.
    pub classes: Vec<ClassName>,
}

/// A benchmark's embeddings and classes.
struct Embedded {
    emb: SplitEmbeddings,
    classes: BenchmarkClasses,
}

impl Suite<'_> {
    /// Runs the suite on the ingest output `data_dir` with `built`'s current weights.
    pub fn run(&self, built: &Built, data_dir: &Path, step: i64) -> anyhow::Result<SuiteResult> {
        let index = Index::read(data_dir)?;
        let mut tally = RoutingTally::default();
        let mut assignments = Vec::new();
        let split = embed_split(
            &built.model,
            &built.device,
            &self.request(
                built,
                data_dir,
                self.split,
                self.pairs,
                self.assignments.then_some(step),
            ),
            &mut tally,
            &mut assignments,
        )?;
        let setup = ZeroShotSetup {
            model: &built.model,
            device: &built.device,
            preprocess: &built.preprocess,
            batch_size: self.batch_size,
        };
        // A classifier has no text side: it classifies with its own head, never zero-shot.
        let zero_shot: &[String] = match self.labels {
            Some(_) => &[],
            None => &self.zero_shot.datasets,
        };
        let probed = self.few_shot.iter().flat_map(|p| &p.settings.datasets);
        let mut benchmarks: BTreeMap<&str, Embedded> = BTreeMap::new();
        for name in zero_shot.iter().chain(probed) {
            if let Some(dir) = self.benchmarks.get(name)
                && !benchmarks.contains_key(name.as_str())
            {
                benchmarks.insert(name, self.embed_benchmark(built, dir)?);
            }
        }
        let (mut rows, mut tasks, mut classes) = (Vec::new(), Vec::new(), Vec::new());
        if let Some(labels) = self.labels {
            rows.extend(classification_rows(&split, labels, step));
        }
        for dataset in zero_shot {
            let (emb, set, templates) = if let Some(embedded) = benchmarks.get(dataset.as_str()) {
                let set = Labelled::of_benchmark(&embedded.emb, &embedded.classes)?;
                let own = embedded.classes.templates.as_deref();
                (&embedded.emb, set, own.unwrap_or(&self.zero_shot.templates))
            } else if let Some(set) = Labelled::of_source(&split, dataset, &index) {
                classes.extend(set.classes.iter().map(|(label, name)| ClassName {
                    dataset: dataset.clone(),
                    label: *label,
                    name: name.clone(),
                }));
                (&split, set, &self.zero_shot.templates[..])
            } else {
                tracing::warn!(
                    "zero-shot: no labelled `{dataset}` pairs in the {} split; add the source \
                     to data.sources",
                    self.split.name()
                );
                continue;
            };
            let (more, task) = zero_shot_rows(&setup, emb, &set, dataset, templates, step)?;
            rows.extend(more);
            tasks.push(task);
        }
        if self.retrieval.enabled
            && self.labels.is_none()
            && let Some((more, task)) = retrieval_rows(
                &split.first(self.retrieval.max_pairs),
                &self.data_name,
                step,
            )?
        {
            rows.extend(more);
            tasks.push(task);
        }
        if let Some(probes) = &self.few_shot
            && let Some(&most) = probes.settings.shots.iter().max()
        {
            let datasets = &probes.settings.datasets;
            let sources: Vec<&str> = (datasets.iter())
                .filter(|d| !benchmarks.contains_key(d.as_str()))
                .map(String::as_str)
                .collect();
            let pool = match sources.is_empty() {
                true => None,
                false => Some(self.embed_pool(built, data_dir, &sources, most, probes.seed)?),
            };
            for dataset in datasets {
                let sets = if let Some(embedded) = benchmarks.get(dataset.as_str()) {
                    let set = Labelled::of_benchmark(&embedded.emb, &embedded.classes)?;
                    let set = set.restricted_to(&set.present_classes());
                    ProbeSets::split(&embedded.emb, set, dataset, most, probes.seed)?
                } else if let Some(pool) = &pool {
                    source_probe_sets(pool, &split, dataset, &index)
                } else {
                    None
                };
                let Some(sets) = sets else {
                    tracing::warn!("few-shot: no labelled `{dataset}` pairs to probe");
                    continue;
                };
                let settings = probes.settings;
                rows.extend(few_shot_rows(
                    &sets,
                    dataset,
                    &settings.shots,
                    settings.features,
                    probes.seed,
                    step,
                )?);
            }
        }
        Ok(SuiteResult {
            rows,
            tasks,
            routing: tally.rows(step, self.split.name()),
            assignments,
            classes,
        })
    }

    fn request<'b>(
        &self,
        built: &'b Built,
        dir: &'b Path,
        split: Split,
        pairs: usize,
        assignments_step: Option<i64>,
    ) -> EmbedRequest<'b> {
        EmbedRequest {
            dir,
            split,
            limit: Some(pairs),
            batch_size: self.batch_size,
            preprocess: &built.preprocess,
            assignments_step,
            only: None,
            mode: self.mode,
        }
    }

    /// The training sources' probe pool: `per_class` train pairs of each class of each of
    /// `sources`, drawn with `seed` (see [`draw_pool`]), embedded.
    fn embed_pool(
        &self,
        built: &Built,
        data_dir: &Path,
        sources: &[&str],
        per_class: usize,
        seed: u64,
    ) -> anyhow::Result<SplitEmbeddings> {
        let keys = draw_pool(data_dir, sources, per_class, seed)?;
        let mut request = self.request(built, data_dir, Split::Train, keys.len(), None);
        request.only = Some(&keys);
        embed_split(
            &built.model,
            &built.device,
            &request,
            &mut RoutingTally::default(),
            &mut Vec::new(),
        )
    }

    /// The embeddings and classes of the benchmark written at `dir`.
    fn embed_benchmark(&self, built: &Built, dir: &Path) -> anyhow::Result<Embedded> {
        let emb = embed_split(
            &built.model,
            &built.device,
            &self.request(built, dir, Split::Test, self.pairs, None),
            &mut RoutingTally::default(),
            &mut Vec::new(),
        )?;
        let classes = BenchmarkClasses::read(dir)?;
        Ok(Embedded { emb, classes })
    }
}

/// A training source's probe: shots from the train-split pool, scored on the evaluated
/// split, both over the classes the pool has.
fn source_probe_sets<'a>(
    pool: &'a SplitEmbeddings,
    test: &'a SplitEmbeddings,
    dataset: &str,
    index: &Index,
) -> Option<ProbeSets<'a>> {
    let pool_set = Labelled::of_source(pool, dataset, index)?;
    let present = pool_set.present_classes();
    let test_set = Labelled::of_source(test, dataset, index)?.restricted_to(&present);
    Some(ProbeSets {
        pool: (pool, pool_set.restricted_to(&present)),
        test: (test, test_set),
    })
}
