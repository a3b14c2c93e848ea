//! V-MoE's inference-capacity evaluation: the evaluation suite run again with every MoE
//! block at a capacity factor of its own, with and without Batch Priority Routing, and what
//! each setting kept and spent.

use std::collections::BTreeMap;
use std::path::Path;

use limoe_core::logs::eval_metrics::{ALL_DATASETS, CAPACITY_MEASURES, capacity_metric};
use limoe_core::logs::{EvalRow, RoutingRow};
use limoe_core::spec::{ModelSpec, Retrieval};
use limoe_model::moe::RouteMode;
use limoe_model::plan::{dropless_expert_tokens, forward_flops};

use crate::model_build::Built;
use crate::suite::Suite;

/// The accuracies of `base` (a classifier's top-1, a contrastive model's zero-shot
/// metrics) at each `(factor, bpr)` setting, named by [`capacity_metric`], with the
/// fraction of assignments dropped and the GFLOPs per example spent. Retrieval, probes and
/// assignments are not repeated.
pub fn capacity_rows(
    base: &Suite,
    built: &Built,
    data_dir: &Path,
    settings: &[(f64, bool)],
    step: i64,
) -> anyhow::Result<Vec<EvalRow>> {
    if settings.is_empty() {
        return Ok(Vec::new());
    }
    let spec = built.model.spec();
    let moe_blocks = spec.active_moe_blocks().len();
    if moe_blocks == 0 {
        tracing::warn!(
            "inference capacity: the {:?} model has no MoE block, so no capacity to vary; its \
             one point is its own evaluation",
            spec.arch
        );
        return Ok(Vec::new());
    }
    let off = Retrieval {
        enabled: false,
        ..Retrieval::default()
    };
    let mut rows = Vec::new();
    for &(factor, bpr) in settings {
        let suite = Suite {
            labels: base.labels,
            mode: RouteMode::Capped {
                capacity_factor: factor,
                bpr,
            },
            split: base.split,
            pairs: base.pairs,
            batch_size: base.batch_size,
            zero_shot: base.zero_shot,
            retrieval: &off,
            few_shot: None,
            assignments: false,
            benchmarks: base.benchmarks.clone(),
            data_name: base.data_name.clone(),
        };
        let result = suite.run(built, data_dir, step)?;
        let named = |dataset: &str, metric: &str, value: f64| EvalRow {
            step,
            dataset: dataset.to_owned(),
            metric: capacity_metric(factor, bpr, metric),
            value,
        };
        rows.extend((result.rows.iter()).map(|r| named(&r.dataset, &r.metric, r.value)));
        let spent = Spent::of(&result.routing);
        let flops = spent.flops_per_example(spec);
        let [dropped, gflops] = CAPACITY_MEASURES;
        rows.push(named(ALL_DATASETS, dropped, spent.dropped_fraction()));
        rows.push(named(ALL_DATASETS, gflops, flops / 1e9));
        tracing::info!(
            "inference capacity {factor} (BPR {}): {:.1}% of assignments dropped, {:.3} \
             GFLOPs per example",
            if bpr { "on" } else { "off" },
            100.0 * spent.dropped_fraction(),
            flops / 1e9
        );
    }
    Ok(rows)
}

/// The image assignments an evaluation's MoE blocks kept and dropped (a classifier routes
/// images only; a contrastive model's captions are left out, so that the count of examples
/// is that of its images).
#[derive(Debug, Default, PartialEq)]
pub struct Spent {
    /// (token, choice) assignments processed by an expert, over all blocks.
    pub kept: u64,
    /// Assignments dropped for lack of capacity, over all blocks.
    pub dropped: u64,
}

impl Spent {
    /// Sums the image rows of routing statistics: `tokens` per expert row, `dropped` once
    /// per block (every expert row of a block repeats it).
    pub fn of(rows: &[RoutingRow]) -> Spent {
        let image = limoe_core::logs::Modality::Image;
        let mut dropped_per_block: BTreeMap<i32, i64> = BTreeMap::new();
        let mut kept = 0;
        for row in rows.iter().filter(|r| r.modality == image) {
            kept += row.tokens.max(0) as u64;
            dropped_per_block.insert(row.block, row.dropped);
        }
        Spent {
            kept,
            dropped: dropped_per_block.values().map(|&d| d.max(0) as u64).sum(),
        }
    }

    /// The fraction of assignments dropped.
    pub fn dropped_fraction(&self) -> f64 {
        let all = self.kept + self.dropped;
        match all {
            0 => 0.0,
            _ => self.dropped as f64 / all as f64,
        }
    }

    /// The matmul FLOPs one example of the evaluation spent, by the plan's formula: its
    /// image assignments as kept, a contrastive model's captions as the plan counts them
    /// (every one kept); a model without MoE blocks spends its whole forward pass.
    pub fn flops_per_example(&self, spec: &ModelSpec) -> f64 {
        let image_assignments = spec.patches() * spec.moe.top_k * spec.active_moe_blocks().len();
        if image_assignments == 0 {
            return forward_flops(spec, 1.0, 0.0);
        }
        let examples = self.examples(image_assignments);
        let text_assignments = dropless_expert_tokens(spec, 1.0) - image_assignments as f64;
        let per_example = self.kept as f64 / examples.max(1.0) + text_assignments;
        forward_flops(spec, 1.0, per_example)
    }

    /// The examples evaluated, when every image makes `per_image` assignments (patches x
    /// top-K x MoE blocks).
    pub fn examples(&self, per_image: usize) -> f64 {
        (self.kept + self.dropped) as f64 / per_image.max(1) as f64
    }
}
