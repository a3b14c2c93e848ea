//! The tiny sweep the local and the Slurm sweep tests run: the tiny model on 96 synthetic
//! pairs, ingest, train, eval and analyze.

/// Three steps: a trial ends in seconds.
pub const SHORT_TRAIN: &str =
    "{steps: 3, batch_size: 8, warmup_steps: 1, eval_every: 3, checkpoint_every: 3}";
/// Long enough to be stopped mid-run, checkpointing every 2 steps.
pub const LONG_TRAIN: &str =
    "{steps: 500, batch_size: 8, warmup_steps: 1, eval_every: 500, checkpoint_every: 2}";

/// The sweep named `name` with `train` as its train section, then `rest` (the `sweep` and
/// `executor` sections).
pub fn tiny_sweep(name: &str, train: &str, rest: &str) -> String {
    format!(
        "name: {name}
data:
  sources: [{{synthetic: {{pairs: 96}}}}]
  row_group_rows: 32
model: {{size: tiny, text_length: 16, moe: {{experts: 4, top_k: 1}}}}
train: {train}
eval: {{batch_size: 16, few_shot: {{shots: [1]}}, zero_shot: {{datasets: [synthetic]}}}}
stages:
  - {{id: ingest, uses: ingest}}
  - {{id: train, uses: train, needs: [ingest]}}
  - {{id: eval, uses: eval, needs: [train, ingest]}}
  - {{id: analyze, uses: analyze, needs: [train, eval]}}
{rest}"
    )
}
