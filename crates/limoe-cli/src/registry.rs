//! The stage kinds this binary knows. Registering a stage is one line here.

use limoe_analysis::AnalyzeStage;
use limoe_core::Registry;
use limoe_core::command::CommandStage;
use limoe_data::{BenchmarksStage, IngestStage};
use limoe_train::finetune::FinetuneStage;
use limoe_train::stages::{EvalStage, TrainStage};

/// Every stage kind of this build.
pub fn registry() -> Registry {
    let mut registry = Registry::new();
    registry.register(CommandStage);
    registry.register(IngestStage);
    registry.register(BenchmarksStage);
    registry.register(TrainStage);
    registry.register(FinetuneStage);
    registry.register(EvalStage);
    registry.register(AnalyzeStage);
    registry
}
