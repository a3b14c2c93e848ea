//! The timed training step the model and torch targets share: the shapes (a spec and its
//! overrides), seeded random inputs, and forward and forward + backward times per step.

use std::time::Instant;

use anyhow::Context;
use candle_core::Device;
use limoe_core::random::splitmix64_next;
use limoe_core::spec::ModelSpec;
use limoe_core::{Registry, load_spec};
use limoe_model::moe::RouteMode;
use limoe_model::random::Stream;
use limoe_model::{Images, Model, Texts};
use limoe_ops::pool::on_pool;

/// One model shape: a spec file, overrides, and how many steps to time.
pub(crate) struct Case {
    /// The name printed in the tables.
    pub name: &'static str,
    /// The experiment spec the shape starts from.
    pub spec: &'static str,
    /// `--set` overrides on top of the spec.
    pub sets: &'static [&'static str],
    /// Untimed steps first.
    pub warmup: usize,
    /// Timed steps.
    pub steps: usize,
}

/// The t128 shape: batch 32 x 64 tokens, width 128, 4 blocks, MLP 512, 4 experts, top-1,
/// capacity 1.25. A pair's 64 tokens are 36 patches of a 48 px image (patch 8) and 28 text
/// positions (some of them padding, as in [`inputs`]).
pub(crate) const T128: Case = Case {
    name: "t128",
    spec: "experiments/tiny.yaml",
    sets: &[
        "model.width=128",
        "model.mlp_dim=512",
        "model.image_size=48",
        "model.text_length=28",
        "model.moe.capacity.train=1.25",
        "train.batch_size=32",
        "train.accumulation=1",
    ],
    warmup: 3,
    steps: 20,
};

/// The S/16 shape at a batch a CPU can time (196 patches + 16 text positions per pair).
pub(crate) const S16: Case = Case {
    name: "S/16",
    spec: "experiments/s16.yaml",
    sets: &["train.batch_size=8", "train.accumulation=1"],
    warmup: 1,
    steps: 5,
};

/// Loads `spec` with the case's overrides and `model.arch` set, routing a batch as one group
/// (as the PyTorch reference, bench/reference.py, does).
pub(crate) fn load(
    registry: &Registry,
    spec: &str,
    sets: &[&str],
    arch: &str,
) -> anyhow::Result<limoe_core::spec::Spec> {
    let mut sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    sets.push(format!("model.arch={arch}"));
    sets.push("model.moe.group_size=null".to_owned());
    load_with(registry, spec, &sets)
}

/// Loads `spec` with the overrides `sets`, checked as `limoe run` checks it.
pub(crate) fn load_with(
    registry: &Registry,
    spec: &str,
    sets: &[String],
) -> anyhow::Result<limoe_core::spec::Spec> {
    let loaded = load_spec(spec.as_ref(), sets, registry)
        .map_err(|errors| anyhow::anyhow!("{errors}"))
        .with_context(|| format!("loading {spec} (run `limoe bench` from the repository root)"))?;
    Ok(loaded.spec)
}

/// Forward and forward + backward times in seconds of `steps` training steps, the first
/// drawing the routing noise of step `first`.
pub(crate) fn step_samples(
    model: &Model,
    images: &Images,
    texts: &Texts,
    first: usize,
    steps: usize,
) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    let device = images.patches.device();
    let mut forward = Vec::with_capacity(steps);
    let mut step = Vec::with_capacity(steps);
    for i in first..first + steps {
        let start = Instant::now();
        let noise_seed = splitmix64_next(i as u64);
        let forward_seconds = on_pool(|| -> candle_core::Result<f64> {
            let output = model.forward(
                images,
                texts,
                RouteMode::Train {
                    noise_seed,
                    first_example: 0,
                },
            )?;
            device.synchronize()?;
            let seconds = start.elapsed().as_secs_f64();
            drop(output.loss.backward()?);
            device.synchronize()?;
            Ok(seconds)
        })?;
        forward.push(forward_seconds);
        step.push(start.elapsed().as_secs_f64());
    }
    Ok((forward, step))
}

/// Seeded random patches, and captions of varying length (some padding) over the vocabulary.
pub(crate) fn inputs(
    config: &ModelSpec,
    batch: usize,
    device: &Device,
) -> anyhow::Result<(Images, Texts)> {
    let mut stream = Stream::new(0);
    let (patches, dim) = (config.patches(), config.patch_dim());
    let values = (0..batch * patches * dim)
        .map(|_| (2.0 * stream.uniform() - 1.0) as f32)
        .collect();
    let images = Images::new(values, batch, patches, dim, device)?;
    let len = config.text_length;
    let ids = (0..batch * len)
        .map(|_| (stream.uniform() * config.vocab_size as f64) as u32)
        .collect();
    let mask: Vec<bool> = (0..batch * len)
        .map(|i| i % len < len - (i / len) % len.div_ceil(2))
        .collect();
    let texts = Texts::new(ids, &mask, batch, len, config.vocab_size, device)?;
    Ok((images, texts))
}

#[cfg(test)]
mod tests {
    use limoe_analysis::AnalyzeStage;
    use limoe_data::{BenchmarksStage, IngestStage};
    use limoe_train::stages::{EvalStage, TrainStage};

    use super::*;

    /// The stage kinds of the default pipeline, which the specs run (their `stages` is left
    /// out) and loading checks.
    fn pipeline_registry() -> Registry {
        let mut registry = Registry::new();
        registry
            .register(IngestStage)
            .register(BenchmarksStage)
            .register(TrainStage)
            .register(EvalStage)
            .register(AnalyzeStage);
        registry
    }

    #[test]
    fn specs_load_as_both_archs_and_inputs_have_padding() {
        let registry = pipeline_registry();
        let spec = concat!(env!("CARGO_MANIFEST_DIR"), "/../../experiments/tiny.yaml");
        let dense = load(&registry, spec, &[], "dense").unwrap();
        assert!(dense.model.active_moe_blocks().is_empty());
        let config = load(&registry, spec, &[], "limoe").unwrap().model;
        assert!(!config.active_moe_blocks().is_empty());
        let (images, texts) = inputs(&config, 7, &Device::Cpu).unwrap();
        assert_eq!(
            images.patches.dims(),
            [7, config.patches(), config.patch_dim()]
        );
        let len = config.text_length;
        assert!(texts.mask.valid_count < 7 * len && texts.mask.valid_count > 7 * len / 2);
    }
}
