//! The names of the built-in stage kinds, as a spec's `uses:` writes them. Every crate that
//! registers, pipes or looks up one of these kinds names it from here.

/// Writes `data.sources` as Parquet shards.
pub const INGEST: &str = "ingest";
/// Writes `eval.benchmarks` as Parquet shards, one dataset each.
pub const BENCHMARKS: &str = "benchmarks";
/// Trains the model on an ingest output.
pub const TRAIN: &str = "train";
/// Transfers a train output's image side to a labelled benchmark.
pub const FINETUNE: &str = "finetune";
/// Scores a train output's last checkpoint.
pub const EVAL: &str = "eval";
/// Draws the report of a run's train and eval outputs.
pub const ANALYZE: &str = "analyze";
/// Runs an external program.
pub const COMMAND: &str = "command";
