//! The key numbers of one run, for the report's table, `summary.json` and sweep comparisons.

use std::collections::BTreeMap;

use limoe_core::logs::{TRAINING_STEPS_SPLIT, metrics as metrics_log, routing as routing_log};
use limoe_core::records::{EvalSummary, PlanRecord};
use polars::prelude::DataFrame;
use serde::{Deserialize, Serialize};

use crate::columns::{floats, ints, optional_floats, strings};
use crate::routing::{
    Thresholds, dead_experts, expert_shares, image_shares, modality_stats, specialisation_counts,
};
use crate::{AnalysisError, Result};

/// Per MoE block, at the last step of the split the routing numbers come from.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct BlockSummary {
    /// Block index.
    pub block: i64,
    /// Experts of the block.
    pub experts: i64,
    /// Experts whose tokens are at least 90% image tokens.
    pub image_specialists: i64,
    /// Experts whose tokens are at most 10% image tokens.
    pub text_specialists: i64,
    /// The largest share of the block's text tokens that one expert receives (1 = collapse).
    pub text_top_share: Option<f64>,
    /// The largest share of the block's image tokens that one expert receives.
    pub image_top_share: Option<f64>,
    /// The expert receiving [`text_top_share`](Self::text_top_share) of the text tokens.
    #[serde(default)]
    pub text_top_expert: Option<i64>,
    /// The expert receiving [`image_top_share`](Self::image_top_share) of the image tokens.
    #[serde(default)]
    pub image_top_expert: Option<i64>,
    /// Experts receiving less than the dead threshold of a modality's tokens, per modality.
    pub dead: BTreeMap<String, i64>,
    /// Share of each modality's routed tokens dropped by capacity, in the split the routing
    /// numbers come from (at the eval capacity).
    pub dropped_rate: BTreeMap<String, f64>,
    /// The same share in the last logged training step, at the train capacity.
    #[serde(default)]
    pub train_dropped_rate: BTreeMap<String, f64>,
}

/// The dropped rates per block and modality at the last step of one split.
struct LastDropped {
    blocks: Vec<Option<i64>>,
    modalities: Vec<Option<String>>,
    rates: Vec<Option<f64>>,
    at_last: Vec<bool>,
}

impl LastDropped {
    fn of(routing: &DataFrame, split: &str) -> Result<LastDropped> {
        let stats = modality_stats(routing, split)?;
        let steps = ints(&stats, routing_log::STEP)?;
        let last = steps.iter().flatten().max().copied();
        Ok(LastDropped {
            blocks: ints(&stats, routing_log::BLOCK)?,
            modalities: strings(&stats, routing_log::MODALITY)?,
            rates: floats(&stats, "dropped_rate")?,
            at_last: steps.iter().map(|&s| s.is_some() && s == last).collect(),
        })
    }

    fn of_block(&self, block: i64) -> BTreeMap<String, f64> {
        (0..self.rates.len())
            .filter(|&j| self.at_last[j] && self.blocks[j] == Some(block))
            .filter_map(|j| Some((self.modalities[j].clone()?, self.rates[j]?)))
            .collect()
    }
}

/// The key numbers of one run.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct RunSummary {
    /// The experiment (or sweep trial) name.
    pub name: String,
    /// The last training step logged.
    pub steps: Option<i64>,
    /// Total loss at the last step.
    pub final_loss: Option<f64>,
    /// Contrastive part of the loss at the last step (none for a classifier).
    pub final_contrastive: Option<f64>,
    /// A classifier's label loss at the last step (none for a contrastive model).
    #[serde(default)]
    pub final_classification: Option<f64>,
    /// The learned temperature (1 / logit scale) at the last step.
    pub temperature: Option<f64>,
    /// Seconds of training (over all attempts).
    pub train_seconds: Option<f64>,
    /// The eval stage's scores (`<dataset>/<metric>`).
    pub eval: EvalSummary,
    /// Each finetune stage's scores (`<benchmark>/top1`, `<benchmark>/chance_top1`), by stage
    /// id.
    #[serde(default)]
    pub transfer: BTreeMap<String, EvalSummary>,
    /// Which split the routing numbers come from (`test` from eval, else `val`).
    pub routing_split: Option<String>,
    /// Per MoE block routing numbers.
    pub blocks: Vec<BlockSummary>,
    /// What the model costs.
    pub plan: Option<PlanRecord>,
}

impl RunSummary {
    /// The training numbers at the last row of a metrics log (none for an empty log).
    pub fn add_metrics(&mut self, metrics: &DataFrame) -> Result<()> {
        let Some(last) = metrics.height().checked_sub(1) else {
            return Ok(());
        };
        let at_last = |name: &str| -> Result<Option<f64>> { Ok(floats(metrics, name)?[last]) };
        // A classifier logs its contrastive loss as NaN, a contrastive model its label loss.
        let finite = |v: Option<f64>| v.filter(|v| v.is_finite());
        self.steps = ints(metrics, metrics_log::STEP)?[last];
        self.final_loss = at_last(metrics_log::LOSS)?;
        self.final_contrastive = finite(at_last(metrics_log::CONTRASTIVE)?);
        self.final_classification =
            finite(optional_floats(metrics, metrics_log::CLASSIFICATION)?[last]);
        self.temperature = at_last(metrics_log::LOGIT_SCALE)?
            .filter(|s| *s > 0.0)
            .map(|s| 1.0 / s);
        self.train_seconds = at_last(metrics_log::WALL_SECONDS)?;
        Ok(())
    }

    /// The per-block routing numbers of `split` from a routing log.
    pub fn add_routing(&mut self, routing: &DataFrame, split: &str, dead: f64) -> Result<()> {
        let shares = image_shares(routing, split)?;
        if shares.height() == 0 {
            return Ok(());
        }
        let counts = specialisation_counts(&shares, Thresholds::default())?;
        let blocks = ints(&counts, routing_log::BLOCK)?;
        let experts = ints(&counts, "experts")?;
        let image = ints(&counts, "image_specialists")?;
        let text = ints(&counts, "text_specialists")?;
        let top = top_shares(routing, split)?;
        let dropped = LastDropped::of(routing, split)?;
        let dead_frame = dead_experts(routing, split, dead)?;
        let dead_blocks = ints(&dead_frame, routing_log::BLOCK)?;
        let dead_modalities = strings(&dead_frame, routing_log::MODALITY)?;
        self.blocks = (0..counts.height())
            .map(|i| {
                let block = blocks[i].unwrap_or_default();
                let dropped_rate = dropped.of_block(block);
                let top_of = |m: &str| top.iter().find(|t| t.block == block && t.modality == m);
                let dead = ["image", "text"]
                    .into_iter()
                    .map(|m| {
                        let n = (0..dead_blocks.len())
                            .filter(|&j| {
                                dead_blocks[j] == Some(block)
                                    && dead_modalities[j].as_deref() == Some(m)
                            })
                            .count() as i64;
                        (m.to_owned(), n)
                    })
                    .collect();
                BlockSummary {
                    block,
                    experts: experts[i].unwrap_or_default(),
                    image_specialists: image[i].unwrap_or_default(),
                    text_specialists: text[i].unwrap_or_default(),
                    text_top_share: top_of("text").map(|t| t.top_share),
                    image_top_share: top_of("image").map(|t| t.top_share),
                    text_top_expert: top_of("text").map(|t| t.expert),
                    image_top_expert: top_of("image").map(|t| t.expert),
                    dead,
                    dropped_rate,
                    train_dropped_rate: BTreeMap::new(),
                }
            })
            .collect();
        self.routing_split = Some(split.to_owned());
        Ok(())
    }

    /// Each block's dropped rates in the last training step of a train routing log (whose
    /// training rows have split `train`), beside those at the eval capacity.
    pub fn add_train_dropped(&mut self, train_routing: &DataFrame) -> Result<()> {
        let dropped = LastDropped::of(train_routing, TRAINING_STEPS_SPLIT)?;
        for block in &mut self.blocks {
            block.train_dropped_rate = dropped.of_block(block.block);
        }
        Ok(())
    }

    /// The flat numbers the report's tables, sweeps and `limoe compare` show (named in
    /// [`crate::names`]): eval scores under their names, plus
    /// `image_specialists` and `text_specialists` (summed over blocks), `text_top_share`,
    /// `dropped_image` and `dropped_text` (means over blocks, at the eval capacity),
    /// `train_dropped_image` and `train_dropped_text` (the same at the train capacity, in the
    /// last training step), `dead_experts` (summed), `steps`, `final_loss`,
    /// `final_contrastive` (or a classifier's `final_classification`), `temperature` and
    /// `train_seconds`.
    pub fn metrics(&self) -> BTreeMap<String, f64> {
        let mut out: BTreeMap<String, f64> = self.eval.clone();
        let sum = |f: &dyn Fn(&BlockSummary) -> f64| self.blocks.iter().map(f).sum::<f64>();
        let mean = |f: &BlockNumber| {
            let values: Vec<f64> = self.blocks.iter().filter_map(f).collect();
            (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
        };
        if !self.blocks.is_empty() {
            out.insert(
                "image_specialists".into(),
                sum(&|b| b.image_specialists as f64),
            );
            out.insert(
                "text_specialists".into(),
                sum(&|b| b.text_specialists as f64),
            );
            out.insert(
                "dead_experts".into(),
                sum(&|b| b.dead.values().sum::<i64>() as f64),
            );
        }
        let means: [(&str, &BlockNumber); 5] = [
            ("text_top_share", &|b| b.text_top_share),
            ("dropped_image", &|b| b.dropped_rate.get("image").copied()),
            ("dropped_text", &|b| b.dropped_rate.get("text").copied()),
            ("train_dropped_image", &|b| {
                b.train_dropped_rate.get("image").copied()
            }),
            ("train_dropped_text", &|b| {
                b.train_dropped_rate.get("text").copied()
            }),
        ];
        for (name, f) in means {
            if let Some(v) = mean(f) {
                out.insert(name.into(), v);
            }
        }
        for (name, v) in [
            ("steps", self.steps.map(|s| s as f64)),
            ("final_loss", self.final_loss),
            ("final_contrastive", self.final_contrastive),
            ("final_classification", self.final_classification),
            ("temperature", self.temperature),
            ("train_seconds", self.train_seconds),
        ] {
            if let Some(v) = v {
                out.insert(name.into(), v);
            }
        }
        out
    }
}

/// A number of a block, when it has one.
type BlockNumber = dyn Fn(&BlockSummary) -> Option<f64>;

/// One block's and modality's busiest expert at the last step.
struct TopShare {
    block: i64,
    modality: String,
    expert: i64,
    top_share: f64,
}

/// The per-expert shares of each (block, modality) at the last step of `split`.
fn top_shares(routing: &DataFrame, split: &str) -> Result<Vec<TopShare>> {
    let shares = expert_shares(routing, split)?;
    let steps = ints(&shares, routing_log::STEP)?;
    let last = steps.iter().flatten().max().copied();
    let blocks = ints(&shares, routing_log::BLOCK)?;
    let modalities = strings(&shares, routing_log::MODALITY)?;
    let experts = ints(&shares, routing_log::EXPERT)?;
    let values = floats(&shares, "share")?;
    let mut out: Vec<TopShare> = Vec::new();
    for i in 0..shares.height() {
        if steps[i] != last {
            continue;
        }
        let (Some(block), Some(modality)) = (blocks[i], modalities[i].clone()) else {
            return Err(AnalysisError::NoData {
                what: "a routing row without block or modality",
            });
        };
        let (share, expert) = (values[i].unwrap_or(0.0), experts[i].unwrap_or_default());
        match out
            .iter_mut()
            .find(|t| t.block == block && t.modality == modality)
        {
            Some(t) if share > t.top_share => (t.expert, t.top_share) = (expert, share),
            Some(_) => {}
            None => out.push(TopShare {
                block,
                modality,
                expert,
                top_share: share,
            }),
        }
    }
    Ok(out)
}
