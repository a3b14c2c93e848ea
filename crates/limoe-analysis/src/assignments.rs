//! Numbers from an assignments log (see `limoe_core::logs::ASSIGNMENTS`): which experts the
//! image tokens of each class go to.
//!
//! Both functions look at the log's last step only, at image tokens of labelled examples
//! only, and count (token, choice) assignments kept by an expert: a choice routed to expert
//! number `experts` (the MoE blocks' expert count, `model.moe.experts`) was dropped and is
//! left out.

use limoe_core::logs::Modality;
use limoe_core::logs::assignments::{BLOCK, EXPERT, LABEL, MODALITY, STEP};
use polars::prelude::*;

use crate::{AnalysisError, Result};

/// The kept image assignments of labelled tokens at the log's last step.
fn labelled_image_choices(assignments: &DataFrame, experts: usize) -> LazyFrame {
    assignments
        .clone()
        .lazy()
        .filter(col(STEP).eq(col(STEP).max()))
        .filter(col(MODALITY).eq(lit(Modality::Image.name())))
        .filter(col(LABEL).is_not_null())
        .filter(col(EXPERT).gt_eq(lit(0)))
        .filter(col(EXPERT).lt(lit(experts as i64)))
}

/// `tokens` per group with `share` = tokens / their sum over `within`.
fn counts_and_shares(frame: LazyFrame, by: &[&str], within: &[&str]) -> Result<LazyFrame> {
    let total = col("tokens")
        .sum()
        .over(within.iter().map(|c| col(*c)).collect::<Vec<_>>())
        .map_err(AnalysisError::polars("computing class shares"))?;
    Ok(frame
        .group_by(by.iter().map(|c| col(*c)).collect::<Vec<_>>())
        .agg([len().cast(DataType::Int64).alias("tokens")])
        .with_column(
            (col("tokens").cast(DataType::Float64) / total.cast(DataType::Float64)).alias("share"),
        ))
}

fn run(frame: LazyFrame, what: &str) -> Result<DataFrame> {
    frame
        .collect()
        .map_err(AnalysisError::polars(format!("computing {what}")))
}

/// Per MoE block, class and expert: `block`, `label`, `expert`, `tokens` (kept image
/// assignments) and `share` = tokens / the class's kept image assignments in the block, so
/// that each (block, label) sums to 1. Experts a class never reaches have no row (share 0).
/// Sorted by block, label, expert.
pub fn class_shares(assignments: &DataFrame, experts: usize) -> Result<DataFrame> {
    let frame = counts_and_shares(
        labelled_image_choices(assignments, experts),
        &[BLOCK, LABEL, EXPERT],
        &[BLOCK, LABEL],
    )?
    .sort([BLOCK, LABEL, EXPERT], SortMultipleOptions::default());
    run(frame, "class shares")
}

/// The `k` classes most routed to each expert of MoE block `block`: `expert`, `rank` (1 =
/// most), `label`, `tokens` and `share` = tokens / the expert's kept image assignments of
/// labelled tokens (so an expert's shares over all classes sum to 1). Ties go to the lower
/// label. Sorted by expert, rank; experts without labelled image tokens have no row.
pub fn top_classes_per_expert(
    assignments: &DataFrame,
    experts: usize,
    block: i32,
    k: usize,
) -> Result<DataFrame> {
    let frame = counts_and_shares(
        labelled_image_choices(assignments, experts).filter(col(BLOCK).eq(lit(block))),
        &[EXPERT, LABEL],
        &[EXPERT],
    )?
    .sort_by_exprs(
        [col(EXPERT), col("share"), col(LABEL)],
        SortMultipleOptions::default().with_order_descending_multi([false, true, false]),
    );
    let sorted = run(frame, "top classes per expert")?;
    let polars = || AnalysisError::polars("ranking the top classes per expert");
    let experts_column = sorted
        .column(EXPERT)
        .and_then(|c| c.cast(&DataType::Int64))
        .map_err(polars())?;
    let mut keep = Vec::with_capacity(sorted.height());
    let mut ranks = Vec::new();
    let (mut previous, mut rank) = (None, 0u32);
    for expert in experts_column.i64().map_err(polars())?.iter() {
        rank = if expert == previous { rank + 1 } else { 1 };
        previous = expert;
        keep.push(rank as usize <= k);
        if rank as usize <= k {
            ranks.push(rank);
        }
    }
    let mask = BooleanChunked::from_slice("keep".into(), &keep);
    let mut top = sorted.filter(&mask).map_err(polars())?;
    top.with_column(Column::new("rank".into(), ranks))
        .map_err(polars())?;
    top.select([EXPERT, "rank", LABEL, "tokens", "share"])
        .map_err(polars())
}

#[cfg(test)]
pub(crate) mod tests;
