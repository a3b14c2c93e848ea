//! The Transfer table of a run: what each finetune stage scored on its benchmark.

use std::collections::BTreeMap;

use limoe_core::logs::eval_metrics::{CHANCE_TOP1, TOP1, metric_key};
use limoe_core::records::EvalSummary;

use super::html::number;

/// The header and (plain text) rows of the Transfer table: one row per finetune stage and
/// benchmark it scored (stage id, benchmark, top-1, chance); a stage whose summary has no
/// top-1 gets one row of dashes, so that it is seen to be missing.
pub(super) fn transfer_table(
    transfer: &BTreeMap<String, EvalSummary>,
) -> (Vec<String>, Vec<Vec<String>>) {
    let header = ["finetune stage", "benchmark", "top-1", "chance top-1"]
        .map(String::from)
        .to_vec();
    let mut rows = Vec::new();
    for (stage, scores) in transfer {
        let benchmarks: Vec<&str> = (scores.keys())
            .filter_map(|key| key.strip_suffix(&format!("/{TOP1}")))
            .collect();
        if benchmarks.is_empty() {
            rows.push(vec![stage.clone(), "–".into(), "–".into(), "–".into()]);
        }
        for benchmark in benchmarks {
            let score = |metric: &str| scores.get(&metric_key(benchmark, metric)).copied();
            rows.push(vec![
                stage.clone(),
                benchmark.to_owned(),
                number(score(TOP1)),
                number(score(CHANCE_TOP1)),
            ]);
        }
    }
    (header, rows)
}
