//! What `limoe classify`, `embed` and `route` start from: the chosen checkpoint loaded into
//! its run's model.

use std::path::Path;

use anyhow::Context;
use limoe_core::Registry;
use limoe_core::spec::Spec;
use limoe_train::checkpoint::Checkpoint;
use limoe_train::infer;
use limoe_train::model_build::Built;

use crate::checkpoint::ModelArgs;

/// A trained model ready for inference.
pub(crate) struct Trained {
    /// The spec of its run.
    pub(crate) spec: Spec,
    /// The model, with the checkpoint's weights.
    pub(crate) built: Built,
    /// The checkpoint the weights came from.
    pub(crate) checkpoint: Checkpoint,
}

impl ModelArgs {
    /// Loads the checkpoint these options name into its run's model.
    pub(crate) fn open(&self, registry: &Registry, runs_dir: &Path) -> anyhow::Result<Trained> {
        let chosen = self.chosen(registry, runs_dir)?;
        let checkpoint = chosen.checkpoint;
        let spec = chosen.spec.map(|s| s.spec).with_context(|| {
            format!(
                "the checkpoint {} does not say which model it belongs to (no complete train \
                 output around it): name the run (`runs/<experiment>`) or its train output",
                checkpoint.path.display()
            )
        })?;
        let built = infer::load(&spec, &checkpoint.path)?;
        tracing::info!(
            "step {} of {} ({})",
            checkpoint.step,
            spec.name,
            checkpoint.path.display()
        );
        Ok(Trained {
            spec,
            built,
            checkpoint,
        })
    }
}
