//! The report's table of the classes each expert's image tokens come from.

use std::collections::BTreeSet;

use limoe_core::logs::assignments::{BLOCK, EXPERT, LABEL};
use polars::prelude::DataFrame;

use super::html::{escape, table};
use crate::Result;
use crate::assignments::top_classes_per_expert;
use crate::columns::{floats, ints};

/// Classes shown per expert.
const TOP: usize = 3;

/// Per MoE block and expert, its top classes ("red circle 41%, ..."), as an HTML table;
/// empty when the assignments hold no labelled image tokens. `names` maps labels to class
/// names (label numbers otherwise).
pub(crate) fn top_classes_table(
    assignments: &DataFrame,
    experts: usize,
    names: Option<&[String]>,
) -> Result<String> {
    let blocks: BTreeSet<i64> = ints(assignments, BLOCK)?.into_iter().flatten().collect();
    let name = |label: i64| {
        usize::try_from(label)
            .ok()
            .and_then(|l| names?.get(l).cloned())
            .unwrap_or_else(|| label.to_string())
    };
    let mut rows = Vec::new();
    for block in blocks {
        let top = top_classes_per_expert(assignments, experts, block as i32, TOP)?;
        let (expert_ids, labels, shares) = (
            ints(&top, EXPERT)?,
            ints(&top, LABEL)?,
            floats(&top, "share")?,
        );
        let mut current: Option<(i64, Vec<String>)> = None;
        for i in 0..top.height() {
            let (Some(expert), Some(label), Some(share)) = (expert_ids[i], labels[i], shares[i])
            else {
                continue;
            };
            let entry = format!("{} {:.0}%", name(label), share * 100.0);
            match &mut current {
                Some((e, classes)) if *e == expert => classes.push(entry),
                _ => {
                    if let Some((e, classes)) = current.take() {
                        rows.push(vec![
                            block.to_string(),
                            e.to_string(),
                            escape(&classes.join(", ")),
                        ]);
                    }
                    current = Some((expert, vec![entry]));
                }
            }
        }
        if let Some((e, classes)) = current {
            rows.push(vec![
                block.to_string(),
                e.to_string(),
                escape(&classes.join(", ")),
            ]);
        }
    }
    if rows.is_empty() {
        return Ok(String::new());
    }
    let header = [
        "block",
        "expert",
        "top classes (share of the expert's image tokens)",
    ]
    .map(String::from)
    .to_vec();
    Ok(table(&header, &rows))
}
