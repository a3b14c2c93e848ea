//! `limoe bench model`: forward + backward time of a training step, LIMoE against its dense
//! baseline of the same active FLOPs, built from the experiment specs the trainer reads.

use std::time::Instant;

use anyhow::Context;
use candle_core::{DType, Device, Tensor};
use limoe_core::Registry;
use limoe_model::{Model, Params, plan};

use crate::step::{Case, S16, T128, inputs, load, time_steps};
use crate::summary::{Summary, against_target};

/// MoE step time over dense step time, at most.
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

/// The shapes timed; the tiny one's training rate is compared with the loader's.
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

/// Times every case as LIMoE and as the dense baseline; prints the ratios, the achieved
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
        "  t128: batch 32 x 64 tokens (36 patches of 48 px + 28 text \
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

/// Builds the case's model as the trainer does and times its training steps.
fn measure(registry: &Registry, case: &Case, arch: &str) -> anyhow::Result<Measured> {
    let spec = load(registry, case.spec, case.sets, arch)?;
    let config = &spec.model;
    let device = limoe_model::device::open(spec.train.device)?;
    let model = Model::new(config, &Params::new(spec.seed), &device)?;
    let batch = spec.train.batch_size / spec.train.accumulation;
    let (images, texts) = inputs(config, batch, &device)?;
    let (forward, step) = time_steps(&model, &images, &texts, case.warmup, case.steps)?;
    Ok(Measured {
        device,
        batch,
        image_size: config.image_size,
        forward,
        step,
        step_flops: plan::cost(config, batch, batch).step_flops,
    })
}

/// FLOP/s of a square f32 matmul on `device`: the median of 5 after a warm-up.
pub(crate) fn matmul_rate(device: &Device) -> anyhow::Result<f64> {
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
    use super::*;

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
}
