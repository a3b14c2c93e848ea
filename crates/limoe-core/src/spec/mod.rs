//! The experiment spec: YAML -> a tree with positions -> typed, validated sections.

mod analysis;
mod aux;
mod batches;
mod benchmark;
mod check;
mod data;
mod de;
mod diagnostic;
mod eval;
mod executor;
mod model;
mod node;
mod overrides;
mod path;
mod presets;
mod stages;
mod sweep;
mod train;

use serde::{Deserialize, Serialize};

pub use analysis::{AnalysisSpec, ImageFormat};
pub use aux::{AuxSpec, BalanceScopes, Scope};
pub use benchmark::{Benchmark, NameList};
pub use check::Checker;
pub use data::{
    Columns, DataSpec, Emoji, EmojiStyle, ForeignParquet, Limit, SYNTHETIC_COLORS,
    SYNTHETIC_SHAPES, Source, Splits, Synthetic, synthetic_class,
};
pub use de::{DeError, Lenient, NodeDeserializer, deserialize_all, deserialize_lenient};
pub use diagnostic::{Diagnostic, SpecErrors, did_you_mean};
pub use eval::{EvalSpec, FewShot, InferenceCapacity, ProbeFeatures, Retrieval, ZeroShot};
pub use executor::{ExecutorSpec, LocalSpec, SlurmSpec};
pub use model::{
    Arch, CHANNELS, CLIP_VOCAB_SIZE, Capacity, Classifier, LabelLoss, LogitScale, MIN_VOCAB_SIZE,
    ModelSpec, MoeSpec, PerModality, Pooling, Size,
};
pub use node::{Entry, Node, Origin, Value};
pub use overrides::apply_overrides;
pub use path::{KeyPath, Segment};
pub use presets::fill_defaults;
pub use stages::{StageSpec, default_pipeline};
pub use sweep::{Distribution, OverrideSet, RandomSweep, SweepSpec};
pub use train::{BestBy, Device, Goal, Monitor, PLACEMENT_KEYS, Precision, Schedule, TrainSpec};

/// A whole experiment.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Experiment name: the directory under `runs/` and `reports/`.
    pub name: String,
    /// Seed of every random choice.
    #[serde(default)]
    pub seed: u64,
    /// Data sources and shard layout.
    #[serde(default)]
    pub data: DataSpec,
    /// The network.
    pub model: ModelSpec,
    /// Optimisation.
    #[serde(default)]
    pub train: TrainSpec,
    /// Evaluation.
    #[serde(default)]
    pub eval: EvalSpec,
    /// Plots and reports.
    #[serde(default)]
    pub analysis: AnalysisSpec,
    /// Expansion into trials.
    #[serde(default, skip_serializing_if = "SweepSpec::is_empty")]
    pub sweep: SweepSpec,
    /// Where `limoe sweep` runs trials besides this machine (Slurm resources); no part of
    /// any cache key.
    #[serde(default, skip_serializing_if = "ExecutorSpec::is_default")]
    pub executor: ExecutorSpec,
    /// The pipeline; the default pipeline when left out.
    #[serde(default)]
    pub stages: Vec<StageSpec>,
}

/// A name usable as a directory: letters, digits, `.`, `_`, `-`, not starting with `.`.
pub fn is_safe_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-'))
}

impl Spec {
    /// The seed that draws the data: `data.seed`, or the model's `seed` when it is unset.
    pub fn data_seed(&self) -> u64 {
        self.data.seed.unwrap_or(self.seed)
    }

    /// Types every section of `tree` (overrides applied), filling what it leaves out (see
    /// [`fill_defaults`]) and stepping over errors so that the value checks still run on
    /// the rest. `file_stem` is the default name.
    pub fn from_tree(tree: &Node, file_stem: &str) -> Lenient<Spec> {
        deserialize_lenient(tree, &KeyPath::root(), |t| fill_defaults(t, file_stem))
    }

    /// Checks every value that typing cannot (ranges, divisibility, names).
    pub fn check(&self, c: &mut Checker) {
        let root = KeyPath::root();
        c.require(is_safe_name(&self.name), &root.key("name"), || {
            format!(
                "name `{}` must be letters, digits, `.`, `_` or `-` (it names a directory)",
                self.name
            )
        });
        self.data.check(&root.key("data"), c);
        self.model.check(&root.key("model"), c);
        (self.train).check(&root.key("train"), self.model.arch.is_classifier(), c);
        train::check_expert_parallel(self, c);
        self.eval.check(&root.key("eval"), c);
        eval::check_dataset_names(self, c);
        self.analysis.check(&root.key("analysis"), c);
        self.sweep.check(&root.key("sweep"), c);
        self.executor.check(&root.key("executor"), c);
        batches::check_batches(self, c);
    }

    /// The resolved spec as YAML (what is saved with every run).
    pub fn to_yaml(&self) -> String {
        serde_saphyr::to_string(self).unwrap_or_else(|e| format!("# unserializable spec: {e}\n"))
    }
}
