//! The evaluation suite: one split embedded once, then zero-shot classification, retrieval
//! and (optionally) few-shot probes on it, with the routing it took. Both the periodic
//! evaluation during training and the `eval` stage run it; only their settings differ.

use std::path::Path;

use limoe_core::logs::{AssignmentRow, EvalRow, RoutingRow};
use limoe_core::records::ClassName;
use limoe_core::spec::{FewShot, Retrieval, ZeroShot};
use limoe_data::split::Split;

use crate::embed::{EmbedRequest, embed_split};
use crate::evaluate::{ZeroShotSetup, class_names, few_shot_rows, retrieval_rows, zero_shot_rows};
use crate::model_build::Built;
use crate::routing_log::RoutingTally;

/// Few-shot linear probes: shots drawn from a pool of training pairs.
pub struct Probes<'a> {
    /// Shot counts and datasets.
    pub settings: &'a FewShot,
    /// Training pairs embedded as the pool the shots are drawn from.
    pub pool_pairs: usize,
    /// Seed of the shots' draw.
    pub seed: u64,
}

/// What one run of the suite measures.
pub struct Suite<'a> {
    /// The split evaluated.
    pub split: Split,
    /// At most this many of its pairs, in file order.
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
}

/// What the suite measured at one step.
pub struct SuiteResult {
    /// Metric rows.
    pub rows: Vec<EvalRow>,
    /// Routing statistics of the evaluated split, labelled with the split's name.
    pub routing: Vec<RoutingRow>,
    /// Per-token expert assignments (empty unless asked for).
    pub assignments: Vec<AssignmentRow>,
    /// The zero-shot datasets' classes found in the split.
    pub classes: Vec<ClassName>,
}

impl Suite<'_> {
    /// Runs the suite on the ingest output `data_dir` with `built`'s current weights.
    pub fn run(&self, built: &Built, data_dir: &Path, step: i64) -> anyhow::Result<SuiteResult> {
        let request = |split, pairs, assignments_step| EmbedRequest {
            dir: data_dir,
            split,
            limit: Some(pairs),
            batch_size: self.batch_size,
            preprocess: &built.preprocess,
            assignments_step,
        };
        let mut tally = RoutingTally::default();
        let mut assignments = Vec::new();
        let split = embed_split(
            &built.model,
            &built.device,
            &request(self.split, self.pairs, self.assignments.then_some(step)),
            &mut tally,
            &mut assignments,
        )?;
        let setup = ZeroShotSetup {
            model: &built.model,
            device: &built.device,
            preprocess: &built.preprocess,
            templates: &self.zero_shot.templates,
            batch_size: self.batch_size,
        };
        let mut rows = zero_shot_rows(&setup, &split, &self.zero_shot.datasets, step)?;
        if self.retrieval.enabled {
            rows.extend(retrieval_rows(
                &split.first(self.retrieval.max_pairs),
                step,
            )?);
        }
        if let Some(probes) = &self.few_shot
            && !probes.settings.shots.is_empty()
            && !probes.settings.datasets.is_empty()
        {
            let pool = embed_split(
                &built.model,
                &built.device,
                &request(Split::Train, probes.pool_pairs, None),
                &mut RoutingTally::default(),
                &mut Vec::new(),
            )?;
            rows.extend(few_shot_rows(
                &pool,
                &split,
                &probes.settings.datasets,
                &probes.settings.shots,
                probes.seed,
                step,
            )?);
        }
        Ok(SuiteResult {
            rows,
            routing: tally.rows(step, self.split.name()),
            assignments,
            classes: class_names(&split, &self.zero_shot.datasets),
        })
    }
}
