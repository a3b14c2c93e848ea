//! `limoe bench model`: forward + backward time of a training step, LIMoE against its dense
//! baseline of the same active FLOPs, built from the experiment specs the trainer reads.

use std::time::Instant;

use anyhow::Context;
use candle_core::{DType, Device, Tensor};
use limoe_core::Registry;
use limoe_model::{Images, Model, Params, Texts, plan};

use crate::step::{Case, S16, T128, inputs, load, step_samples};
use crate::summary::{Summary, against_target};

/// MoE step time over dense step time, at most.
const MOE_DENSE_TARGET: f64 = 1.10;
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

/// One case's model built for timing, with its inputs.
struct Prepared {
    model: Model,
    images: Images,
    texts: Texts,
    device: Device,
    batch: usize,
    image_size: usize,
    step_flops: f64,
}

/// The step times of one model, in seconds.
struct Measured {
    forward: Summary,
    step: Summary,
}

/// The two architectures each case times: LIMoE and its dense twin.
const ARCHS: [&str; 2] = ["limoe", "dense"];

/// Times every case as LIMoE and as the dense baseline, their steps alternating so that a
/// drift of the machine's speed reaches both; prints the ratios, the achieved GFLOP/s, and
/// the tiny config's training consumption against `loader` when it ran.
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
        let prepared = [
            prepare(registry, case, ARCHS[0])?,
            prepare(registry, case, ARCHS[1])?,
        ];
        let (measured, ratios) = alternate(case, &prepared)?;
        for ((arch, p), m) in ARCHS.iter().zip(&prepared).zip(&measured) {
            let ceiling = match ceiling {
                Some(rate) => rate,
                None => *ceiling.insert(matmul_rate(&p.device)?),
            };
            let achieved = p.step_flops / m.step.median;
            println!(
                "  {:<6} {arch:<6} {:>5} {:>8.1} {:>22} {:>8.1} {:>8.1} {:>5.0}%",
                case.name,
                p.batch,
                m.forward.median * 1e3,
                format!(
                    "{:.1} ({:.1}-{:.1})",
                    m.step.median * 1e3,
                    m.step.min * 1e3,
                    m.step.max * 1e3
                ),
                p.step_flops / 1e9,
                achieved / 1e9,
                100.0 * achieved / ceiling,
            );
            if case.name == "tiny" && *arch == "limoe" {
                tiny_rate = Some((p.batch as f64 / m.step.median, p.image_size));
            }
        }
        println!(
            "  {:<6} MoE/dense step time {} (per-round ratios {:.2}-{:.2})",
            case.name,
            against_target(ratios.median, MOE_DENSE_TARGET, true),
            ratios.min,
            ratios.max
        );
    }
    let counts: Vec<String> = CASES
        .iter()
        .map(|c| format!("{} ({}, after {})", c.steps, c.name, c.warmup))
        .collect();
    println!(
        "  medians of {} rounds of one LIMoE and one dense step; MoE/dense = the median of \
         the rounds' ratios; GFLOP from limoe_model::plan::cost (matmuls only)",
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

/// Builds the case's model as the trainer does, with its inputs.
fn prepare(registry: &Registry, case: &Case, arch: &str) -> anyhow::Result<Prepared> {
    let spec = load(registry, case.spec, case.sets, arch)?;
    let config = &spec.model;
    let device = limoe_model::device::open(spec.train.device)?;
    let model = Model::new(config, &Params::new(spec.seed), &device)?;
    let batch = spec.train.batch_size / spec.train.accumulation;
    let (images, texts) = inputs(config, batch, &device)?;
    Ok(Prepared {
        model,
        images,
        texts,
        device,
        batch,
        image_size: config.image_size,
        step_flops: plan::cost(config, batch, batch).step_flops,
    })
}

/// Warms both models up, then times `case.steps` rounds of one step of each; returns each
/// model's times and the rounds' ratios of the first's step time to the second's.
fn alternate(case: &Case, prepared: &[Prepared; 2]) -> anyhow::Result<([Measured; 2], Summary)> {
    let mut samples: [(Vec<f64>, Vec<f64>); 2] = Default::default();
    for p in prepared {
        step_samples(&p.model, &p.images, &p.texts, 0, case.warmup)?;
    }
    let mut ratios = Vec::with_capacity(case.steps);
    for round in case.warmup..case.warmup + case.steps {
        let mut steps = [0.0; 2];
        for ((p, (forward, step)), seconds) in prepared.iter().zip(&mut samples).zip(&mut steps) {
            let (f, s) = step_samples(&p.model, &p.images, &p.texts, round, 1)?;
            forward.extend(f);
            step.extend(&s);
            *seconds = s.iter().sum();
        }
        ratios.push(steps[0] / steps[1]);
    }
    let summary = |samples: &[f64]| Summary::of(samples).context("a case times no steps");
    let measured = |(forward, step): &(Vec<f64>, Vec<f64>)| -> anyhow::Result<Measured> {
        Ok(Measured {
            forward: summary(forward)?,
            step: summary(step)?,
        })
    };
    let [first, second] = &samples;
    Ok(([measured(first)?, measured(second)?], summary(&ratios)?))
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
