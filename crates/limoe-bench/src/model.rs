//! `limoe bench model`: forward + backward time of a training step, LIMoE against its dense
//! baseline of the same active FLOPs, built from the experiment specs the trainer reads.

use std::time::Instant;

use anyhow::Context;
use candle_core::{DType, Device, Tensor};
use limoe_core::{Registry, load_spec};
use limoe_model::moe::RouteMode;
use limoe_model::random::{Stream, mix64};
use limoe_model::{Images, Model, ModelConfig, Params, Texts, plan};
use limoe_ops::pool::on_pool;
use limoe_train::{device_kind, model_config};

/// MoE step time over dense step time that issue 4 asks for, at most.
const MOE_DENSE_TARGET: f64 = 1.15;
/// Loader pairs/s over training pairs/s at the tiny config, at least.
const LOADER_TARGET: f64 = 5.0;
/// Side of the square matmul that measures the achievable f32 matmul rate.
const MATMUL_SIDE: usize = 1024;

/// Pairs/s the loader delivered for images of `side` px.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LoaderRate {
    /// Image side after resizing.
    pub side: usize,
    /// Delivered pairs per second.
    pub pairs_per_second: f64,
}

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

/// The tiny shape (PERF-NOTES' probe): batch 32 x 64 tokens, width 128, 4 blocks, MLP
/// 512, 4 experts, top-1, capacity 1.25. A pair's 64 tokens are 36 patches of a 48 px image
/// (patch 8) and 28 text positions (some of them padding, as in [`inputs`]).
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

const CASES: [Case; 3] = [
    Case {
        name: "tiny",
        spec: "experiments/tiny.yaml",
        sets: &[],
        warmup: 3,
        steps: 10,
    },
    T128,
    S16,
];

/// Median, minimum and maximum of timings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Summary {
    /// The median.
    pub median: f64,
    /// The smallest sample.
    pub min: f64,
    /// The largest sample.
    pub max: f64,
}

impl Summary {
    /// None for no samples.
    pub(crate) fn of(samples: &[f64]) -> Option<Summary> {
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = match n {
            0 => return None,
            _ if n % 2 == 1 => sorted[n / 2],
            _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        };
        Some(Summary {
            median,
            min: sorted[0],
            max: sorted[n - 1],
        })
    }
}

/// A ratio next to its target, e.g. `1.07 (target <= 1.15: met)`.
pub(crate) fn against_target(ratio: f64, target: f64, at_most: bool) -> String {
    let (sign, met) = if at_most {
        ("<=", ratio <= target)
    } else {
        (">=", ratio >= target)
    };
    let verdict = if met { "met" } else { "missed" };
    format!("{ratio:.2} (target {sign} {target:.2}: {verdict})")
}

/// The loader's rate at images of `side` px, if it measured that size.
fn rate_at(rates: &[LoaderRate], side: usize) -> Option<f64> {
    rates
        .iter()
        .find(|r| r.side == side)
        .map(|r| r.pairs_per_second)
}

/// Timings of one model at one batch size, in seconds.
struct Measured {
    device: Device,
    batch: usize,
    image_size: usize,
    forward: Summary,
    step: Summary,
    step_flops: f64,
}

/// Times both cases as LIMoE and as the dense baseline; prints the ratios, the achieved
/// GFLOP/s, and the tiny config's training consumption against `loader` when it ran.
pub fn model(registry: &Registry, loader: Option<&[LoaderRate]>) -> anyhow::Result<()> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    println!(
        "model: training step = forward + backward (no optimiser), random inputs, \
         {threads} CPU threads"
    );
    println!(
        "  {:<6} {:<6} {:>5} {:>8} {:>22} {:>8} {:>8} {:>6}",
        "config", "arch", "batch", "fwd ms", "fwd+bwd ms (min-max)", "GFLOP", "GFLOP/s", "of mm"
    );
    let mut tiny_rate = None;
    let mut ceiling = None;
    for case in &CASES {
        let mut medians = [0.0; 2];
        for (slot, arch) in ["limoe", "dense"].into_iter().enumerate() {
            let m = measure(registry, case, arch)?;
            let ceiling = match ceiling {
                Some(rate) => rate,
                None => *ceiling.insert(matmul_rate(&m.device)?),
            };
            let achieved = m.step_flops / m.step.median;
            println!(
                "  {:<6} {arch:<6} {:>5} {:>8.1} {:>22} {:>8.1} {:>8.1} {:>5.0}%",
                case.name,
                m.batch,
                m.forward.median * 1e3,
                format!(
                    "{:.1} ({:.1}-{:.1})",
                    m.step.median * 1e3,
                    m.step.min * 1e3,
                    m.step.max * 1e3
                ),
                m.step_flops / 1e9,
                achieved / 1e9,
                100.0 * achieved / ceiling,
            );
            medians[slot] = m.step.median;
            if case.name == "tiny" && arch == "limoe" {
                tiny_rate = Some((m.batch as f64 / m.step.median, m.image_size));
            }
        }
        println!(
            "  {:<6} MoE/dense step time {}",
            case.name,
            against_target(medians[0] / medians[1], MOE_DENSE_TARGET, true)
        );
    }
    let counts: Vec<String> = CASES
        .iter()
        .map(|c| format!("{} ({}, after {})", c.steps, c.name, c.warmup))
        .collect();
    println!(
        "  medians of {} steps; GFLOP from limoe_model::plan::cost (matmuls only)",
        counts.join(", ")
    );
    println!(
        "  t128 = the issue's tiny shape: batch 32 x 64 tokens (36 patches of 48 px + 28 text \
         positions), width 128, 4 blocks, MLP 512, 4 experts, top-1, capacity 1.25"
    );
    if let Some(rate) = ceiling {
        println!(
            "  peak: theoretical unknown (clock and FMA units are not readable here); of mm = \
             share of an f32 {MATMUL_SIDE}^3 matmul through candle, {:.1} GFLOP/s",
            rate / 1e9
        );
    }
    if let Some((rate, side)) = tiny_rate {
        println!("  tiny LIMoE training consumes {rate:.0} pairs/s (forward + backward only)");
        match loader.map(|rates| rate_at(rates, side)) {
            Some(Some(loader_rate)) => println!(
                "  loader at {side}px / training: {}",
                against_target(loader_rate / rate, LOADER_TARGET, false)
            ),
            Some(None) => println!("  the loader target measured no {side}px case"),
            None => println!("  run the loader target too for loader / training"),
        }
    }
    Ok(())
}

/// Loads `spec` with the case's overrides and `model.arch` set.
pub(crate) fn load(
    registry: &Registry,
    spec: &str,
    sets: &[&str],
    arch: &str,
) -> anyhow::Result<limoe_core::spec::Spec> {
    let mut sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    sets.push(format!("model.arch={arch}"));
    let loaded = load_spec(spec.as_ref(), &sets, registry)
        .map_err(|errors| anyhow::anyhow!("{errors}"))
        .with_context(|| format!("loading {spec} (run `limoe bench` from the repository root)"))?;
    Ok(loaded.spec)
}

/// Builds the case's model as the trainer does and times its training steps.
fn measure(registry: &Registry, case: &Case, arch: &str) -> anyhow::Result<Measured> {
    let spec = load(registry, case.spec, case.sets, arch)?;
    let config = model_config(&spec.model);
    let device = limoe_model::device::open(device_kind(spec.train.device))?;
    let model = Model::new(&config, &Params::new(spec.seed), &device)?;
    let batch = spec.train.batch_size / spec.train.accumulation;
    let (images, texts) = inputs(&config, batch, &device)?;
    let (forward, step) = time_steps(&model, &images, &texts, case.warmup, case.steps)?;
    Ok(Measured {
        device,
        batch,
        image_size: config.image_size,
        forward,
        step,
        step_flops: plan::cost(&config, batch, batch).step_flops,
    })
}

/// Forward and forward + backward times of `steps` training steps after `warmup` ones, in
/// seconds; each step draws its own routing noise.
pub(crate) fn time_steps(
    model: &Model,
    images: &Images,
    texts: &Texts,
    warmup: usize,
    steps: usize,
) -> anyhow::Result<(Summary, Summary)> {
    step_samples(model, images, texts, 0, warmup)?;
    let (forward, step) = step_samples(model, images, texts, warmup, steps)?;
    let summary = |samples: &[f64]| Summary::of(samples).context("a case times no steps");
    Ok((summary(&forward)?, summary(&step)?))
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
        let noise_seed = mix64(i as u64);
        let forward_seconds = on_pool(|| -> candle_core::Result<f64> {
            let output = model.forward(images, texts, RouteMode::Train { noise_seed })?;
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
    config: &ModelConfig,
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

/// FLOP/s of a square f32 matmul on `device`: the median of 5 after a warm-up.
fn matmul_rate(device: &Device) -> anyhow::Result<f64> {
    let a = Tensor::ones((MATMUL_SIDE, MATMUL_SIDE), DType::F32, device)?;
    let mut times = Vec::new();
    for _ in 0..6 {
        let start = Instant::now();
        drop(a.matmul(&a)?);
        device.synchronize()?;
        times.push(start.elapsed().as_secs_f64());
    }
    let median = Summary::of(&times[1..])
        .context("no matmul timings")?
        .median;
    Ok(2.0 * (MATMUL_SIDE as f64).powi(3) / median)
}

#[cfg(test)]
mod tests {
    use limoe_analysis::AnalyzeStage;
    use limoe_data::IngestStage;
    use limoe_train::stages::{EvalStage, TrainStage};

    use super::*;

    #[test]
    fn summary_median_min_max() {
        assert_eq!(Summary::of(&[]), None);
        let odd = Summary::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((odd.median, odd.min, odd.max), (2.0, 1.0, 3.0));
        assert_eq!(Summary::of(&[4.0, 1.0, 3.0, 2.0]).unwrap().median, 2.5);
    }

    #[test]
    fn ratios_name_their_target() {
        assert_eq!(
            against_target(1.07, 1.15, true),
            "1.07 (target <= 1.15: met)"
        );
        assert_eq!(
            against_target(1.2, 1.15, true),
            "1.20 (target <= 1.15: missed)"
        );
        assert_eq!(
            against_target(4.0, 5.0, false),
            "4.00 (target >= 5.00: missed)"
        );
    }

    #[test]
    fn loader_rate_by_side() {
        let rates = [
            LoaderRate {
                side: 32,
                pairs_per_second: 900.0,
            },
            LoaderRate {
                side: 224,
                pairs_per_second: 50.0,
            },
        ];
        assert_eq!(rate_at(&rates, 224), Some(50.0));
        assert_eq!(rate_at(&rates, 64), None);
    }

    /// The stage kinds of the default pipeline, which the specs run (their `stages` is left
    /// out) and loading checks.
    fn pipeline_registry() -> Registry {
        let mut registry = Registry::new();
        registry
            .register(IngestStage)
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
        assert!(model_config(&dense.model).active_moe_blocks().is_empty());
        let config = model_config(&load(&registry, spec, &[], "limoe").unwrap().model);
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
