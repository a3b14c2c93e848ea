//! Numbers from a routing log (see `limoe_core::logs::ROUTING`): modality specialisation,
//! expert utilisation, dead experts and per-modality drop rates and router entropies.
//!
//! Each function takes the whole routing frame and the split to look at (`train`, `val`,
//! ...). Shares that would divide by zero (no tokens at all) are null.

use limoe_core::logs::Modality;
use limoe_core::logs::routing::{
    BLOCK, DROPPED, EXPERT, GLOBAL_ENTROPY, LOCAL_ENTROPY, MODALITY, SPLIT, STEP, TOKENS,
};
use polars::prelude::*;

use crate::{AnalysisError, Result};

/// Image-share thresholds classifying an expert by the modality it serves.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Thresholds {
    /// An expert with image share at least this is an image specialist.
    pub image: f64,
    /// An expert with image share at most this is a text specialist.
    pub text: f64,
}

impl Default for Thresholds {
    /// Image specialists at share >= 0.9, text specialists at share <= 0.1.
    fn default() -> Thresholds {
        Thresholds {
            image: 0.9,
            text: 0.1,
        }
    }
}

/// The rows of `split` at its last step.
fn final_step(routing: &DataFrame, split: &str) -> LazyFrame {
    routing
        .clone()
        .lazy()
        .filter(col(SPLIT).eq(lit(split)))
        .filter(col(STEP).eq(col(STEP).max()))
}

/// `num / den` as a float, null where `den` is zero.
fn ratio(num: Expr, den: Expr) -> Expr {
    when(den.clone().gt(lit(0)))
        .then(num.cast(DataType::Float64) / den.cast(DataType::Float64))
        .otherwise(lit(NULL).cast(DataType::Float64))
}

fn run(frame: LazyFrame, what: &str) -> Result<DataFrame> {
    frame
        .collect()
        .map_err(AnalysisError::polars(format!("computing {what}")))
}

/// Per MoE block and expert at the last step of `split`: `step`, `block`, `expert`,
/// `image_tokens`, `text_tokens` and `image_share` = image / (image + text) tokens.
/// Sorted by block, then image share descending (nulls last), then expert.
pub fn image_shares(routing: &DataFrame, split: &str) -> Result<DataFrame> {
    let tokens_of = |m: Modality| {
        col(TOKENS)
            .filter(col(MODALITY).eq(lit(m.name())))
            .sum()
            .alias(format!("{}_tokens", m.name()))
    };
    let frame = final_step(routing, split)
        .group_by([col(STEP), col(BLOCK), col(EXPERT)])
        .agg([tokens_of(Modality::Image), tokens_of(Modality::Text)])
        .with_column(
            ratio(
                col("image_tokens"),
                col("image_tokens") + col("text_tokens"),
            )
            .alias("image_share"),
        )
        .sort_by_exprs(
            [col(BLOCK), col("image_share"), col(EXPERT)],
            SortMultipleOptions::default()
                .with_order_descending_multi([false, true, false])
                .with_nulls_last(true),
        );
    run(frame, "image shares")
}

/// Per block, from [`image_shares`]: `experts`, `image_specialists` (share >=
/// `thresholds.image`), `text_specialists` (share <= `thresholds.text`) and `mixed` (in
/// between); experts without tokens count in none of the three. Sorted by block.
pub fn specialisation_counts(shares: &DataFrame, thresholds: Thresholds) -> Result<DataFrame> {
    let share = || col("image_share");
    let count = |e: Expr, name: &str| e.sum().cast(DataType::Int64).alias(name);
    let frame = shares
        .clone()
        .lazy()
        .group_by([col(BLOCK)])
        .agg([
            len().cast(DataType::Int64).alias("experts"),
            count(share().gt_eq(lit(thresholds.image)), "image_specialists"),
            count(share().lt_eq(lit(thresholds.text)), "text_specialists"),
            count(
                share()
                    .gt(lit(thresholds.text))
                    .and(share().lt(lit(thresholds.image))),
                "mixed",
            ),
        ])
        .sort([BLOCK], SortMultipleOptions::default());
    run(frame, "specialisation counts")
}

/// Per step, block, modality and expert of `split`: `tokens` and `share`, the expert's
/// part of the modality's kept tokens in that block and step. Sorted by step, block,
/// modality, expert.
pub fn expert_shares(routing: &DataFrame, split: &str) -> Result<DataFrame> {
    let total = col(TOKENS)
        .sum()
        .over([col(STEP), col(BLOCK), col(MODALITY)])
        .map_err(AnalysisError::polars("computing expert shares"))?;
    let frame = routing
        .clone()
        .lazy()
        .filter(col(SPLIT).eq(lit(split)))
        .select([
            col(STEP),
            col(BLOCK),
            col(MODALITY),
            col(EXPERT),
            col(TOKENS),
            ratio(col(TOKENS), total).alias("share"),
        ])
        .sort(
            [STEP, BLOCK, MODALITY, EXPERT],
            SortMultipleOptions::default(),
        );
    run(frame, "expert shares")
}

/// The experts of [`expert_shares`] at the last step of `split` whose share of a
/// modality's tokens is below `threshold` (`analysis.dead_expert_threshold`): `block`,
/// `modality`, `expert`, `tokens`, `share`.
pub fn dead_experts(routing: &DataFrame, split: &str, threshold: f64) -> Result<DataFrame> {
    let shares = expert_shares(routing, split)?;
    let frame = shares
        .lazy()
        .filter(col(STEP).eq(col(STEP).max()))
        .filter(col("share").lt(lit(threshold)))
        .select([
            col(BLOCK),
            col(MODALITY),
            col(EXPERT),
            col(TOKENS),
            col("share"),
        ]);
    run(frame, "dead experts")
}

/// Per step, block and modality of `split`: `kept` tokens (summed over experts),
/// `dropped`, `dropped_rate` = dropped / (kept + dropped), `local_entropy` and
/// `global_entropy` (the per-modality values repeated on each expert row, taken once).
/// Sorted by step, block, modality.
pub fn modality_stats(routing: &DataFrame, split: &str) -> Result<DataFrame> {
    let frame = routing
        .clone()
        .lazy()
        .filter(col(SPLIT).eq(lit(split)))
        .group_by([col(STEP), col(BLOCK), col(MODALITY)])
        .agg([
            col(TOKENS).sum().alias("kept"),
            col(DROPPED).first(),
            col(LOCAL_ENTROPY).first(),
            col(GLOBAL_ENTROPY).first(),
        ])
        .with_column(ratio(col(DROPPED), col("kept") + col(DROPPED)).alias("dropped_rate"))
        .select([
            col(STEP),
            col(BLOCK),
            col(MODALITY),
            col("kept"),
            col(DROPPED),
            col("dropped_rate"),
            col(LOCAL_ENTROPY),
            col(GLOBAL_ENTROPY),
        ])
        .sort([STEP, BLOCK, MODALITY], SortMultipleOptions::default());
    run(frame, "per-modality routing statistics")
}

#[cfg(test)]
pub(crate) mod tests;

/// The largest share of `modality`'s kept tokens one expert takes, averaged over the MoE
/// blocks, at every step of `split`: `(step, share)` in step order (1 = every block's tokens
/// on one expert). A step where a block routed none of the modality's tokens leaves it out.
pub fn top_share_by_step(
    routing: &DataFrame,
    split: &str,
    modality: Modality,
) -> Result<Vec<(i64, f64)>> {
    let frame = expert_shares(routing, split)?
        .lazy()
        .filter(col(MODALITY).eq(lit(modality.name())))
        .group_by([col(STEP), col(BLOCK)])
        .agg([col("share").max().alias("top")])
        .group_by([col(STEP)])
        .agg([col("top").mean()])
        .sort([STEP], SortMultipleOptions::default());
    let frame = run(frame, "top expert shares")?;
    let steps = crate::columns::ints(&frame, STEP)?;
    let tops = crate::columns::floats(&frame, "top")?;
    Ok(steps
        .into_iter()
        .zip(tops)
        .filter_map(|(step, top)| Some((step?, top?)))
        .collect())
}
