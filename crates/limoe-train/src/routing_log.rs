//! Routing statistics of the MoE blocks as log rows, summed over batches.

use std::collections::BTreeMap;

use limoe_core::logs::{AssignmentRow, Modality, RoutingRow};
use limoe_model::encoder::BlockRouting;
use limoe_model::moe::{AuxValues, ModalityStats};

/// Per (block, modality): routed assignments per expert, dropped ones, gate sums and
/// entropy sums weighted by the batches' token counts.
#[derive(Default)]
pub struct RoutingTally {
    blocks: BTreeMap<(usize, Modality), Tally>,
}

#[derive(Default)]
struct Tally {
    routed: Vec<u64>,
    dropped: u64,
    gate_sums: Vec<f64>,
    local_entropy_sum: f64,
    global_entropy_sum: f64,
    tokens: f64,
}

impl RoutingTally {
    /// Adds one forward pass's reports (a device sync per block).
    pub fn add(&mut self, routing: &[BlockRouting], counts: [usize; 2]) -> anyhow::Result<()> {
        for block in routing {
            let stats = block.stats.to_host()?;
            for (modality, stats, tokens) in [
                (Modality::Image, &stats.image, counts[0]),
                (Modality::Text, &stats.text, counts[1]),
            ] {
                if tokens > 0 {
                    self.blocks
                        .entry((block.block, modality))
                        .or_default()
                        .add(stats, tokens as f64);
                }
            }
        }
        Ok(())
    }

    /// The rows of every (block, modality, expert) seen, for `step` and `split`.
    pub fn rows(&self, step: i64, split: &str) -> Vec<RoutingRow> {
        let mut rows = Vec::new();
        for (&(block, modality), tally) in &self.blocks {
            for (expert, (&routed, &gates)) in tally.routed.iter().zip(&tally.gate_sums).enumerate()
            {
                rows.push(RoutingRow {
                    step,
                    split: split.to_string(),
                    block: block as i32,
                    modality,
                    expert: expert as i32,
                    tokens: routed as i64,
                    dropped: tally.dropped as i64,
                    mean_gate: gates / tally.tokens,
                    local_entropy: tally.local_entropy_sum / tally.tokens,
                    global_entropy: tally.global_entropy_sum / tally.tokens,
                });
            }
        }
        rows
    }
}

impl Tally {
    fn add(&mut self, stats: &ModalityStats, tokens: f64) {
        if self.routed.is_empty() {
            self.routed = vec![0; stats.routed.len()];
            self.gate_sums = vec![0.0; stats.mean_gate.len()];
        }
        for (sum, &r) in self.routed.iter_mut().zip(&stats.routed) {
            *sum += r;
        }
        for (sum, &g) in self.gate_sums.iter_mut().zip(&stats.mean_gate) {
            *sum += g * tokens;
        }
        self.dropped += stats.dropped;
        self.local_entropy_sum += stats.local_entropy * tokens;
        self.global_entropy_sum += stats.global_entropy * tokens;
        self.tokens += tokens;
    }
}

/// Which example and position each routed token came from: image tokens first (example
/// `t / patches`, position `t % patches`), then the real text tokens in mask order.
pub struct TokenOrigins {
    origins: Vec<(usize, Modality, usize)>,
}

impl TokenOrigins {
    /// The origins of a batch of `examples` with `patches` image tokens each and the text
    /// `mask` [examples x text_length] (non-zero = real token).
    pub fn new(examples: usize, patches: usize, mask: &[u8], text_length: usize) -> TokenOrigins {
        let image = (0..examples * patches).map(|t| (t / patches, Modality::Image, t % patches));
        let text = (0..mask.len())
            .filter(|&i| mask[i] != 0)
            .map(|i| (i / text_length, Modality::Text, i % text_length));
        TokenOrigins {
            origins: image.chain(text).collect(),
        }
    }

    /// Assignment rows of every routed token and choice of every block, for the first
    /// `keys.len()` examples of the batch (`labels` alongside).
    pub fn assignments(
        &self,
        routing: &[BlockRouting],
        step: i64,
        keys: &[String],
        labels: &[Option<i32>],
    ) -> anyhow::Result<Vec<AssignmentRow>> {
        let mut rows = Vec::new();
        for block in routing {
            let experts: Vec<Vec<u32>> = block.experts.to_vec2()?;
            if experts.len() != self.origins.len() {
                anyhow::bail!(
                    "block {} routed {} tokens, the batch has {}",
                    block.block,
                    experts.len(),
                    self.origins.len()
                );
            }
            for (&(example, modality, position), choices) in self.origins.iter().zip(&experts) {
                if example >= keys.len() {
                    continue;
                }
                for (choice, &expert) in choices.iter().enumerate() {
                    rows.push(AssignmentRow {
                        step,
                        key: keys[example].clone(),
                        label: labels[example],
                        modality,
                        block: block.block as i32,
                        position: position as i32,
                        choice: choice as i32,
                        expert: expert as i32,
                    });
                }
            }
        }
        Ok(rows)
    }
}

/// Unweighted auxiliary terms summed over blocks.
pub fn aux_sums(routing: &[BlockRouting]) -> anyhow::Result<AuxValues> {
    let mut sums = AuxValues::default();
    for block in routing {
        let mut values = block.aux.to_host()?;
        for (sum, value) in sums.values_mut().into_iter().zip(values.values_mut()) {
            *sum += *value;
        }
    }
    Ok(sums)
}
