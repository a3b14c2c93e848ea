//! `limoe bench torch`: the training step of limoe next to the same step in the PyTorch
//! reference model kept in `bench/reference.py`, after checking that both compute the same
//! function (loss and gradients for the same weights and batch). Without a `python3` that can
//! import torch it prints how to install it and measures nothing; it never fails for that.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Context;
use candle_core::{DType, Device, Tensor};
use limoe_core::Registry;
use limoe_core::spec::{ModelSpec, MoeSpec, Pooling};
use limoe_model::moe::{RouteMode, aux_weights};
use limoe_model::{Images, Model, Params, Texts, plan};
use serde_json::{Value, json};

use crate::step::{Case, S16, T128, inputs, load, step_samples};
use crate::summary::{Summary, against_target};

/// The reference script, relative to the repository root.
const REFERENCE: &str = "bench/reference.py";
/// Largest relative difference of the total loss that counts as agreement (f32).
const LOSS_TOLERANCE: f64 = 1e-5;
/// Largest relative L2 difference of a parameter's gradient that counts as agreement.
const GRAD_TOLERANCE: f64 = 1e-3;
/// Parameters with more values than this get no exported gradient (the S/16 token table).
const GRAD_MAX_VALUES: usize = 1 << 22;
/// Pause before each side's round: the other side's worker threads (OpenMP's, rayon's) spin
/// for a while after their last task and would take the cores from the first step.
const SETTLE: std::time::Duration = std::time::Duration::from_millis(500);
/// Alternating rounds of limoe and PyTorch steps per case.
const ROUNDS: usize = 10;
/// A case compared with PyTorch.
struct Compared {
    /// The directory name it is exported under.
    slug: &'static str,
    case: Case,
    /// limoe step time over PyTorch's, at most: the lead limoe kept on the machines of the
    /// first measurements (t128 0.64-0.70, S/16 0.74-0.87 there).
    target: f64,
}

/// The cases compared with PyTorch.
const CASES: [Compared; 2] = [
    Compared {
        slug: "t128",
        case: T128,
        target: 0.70,
    },
    Compared {
        slug: "s16",
        case: S16,
        target: 0.85,
    },
];

/// A case's model, batch and check-pass losses, written to a directory for the reference.
struct Exported {
    model: Model,
    config: ModelSpec,
    images: Images,
    texts: Texts,
    batch: usize,
    loss: f64,
}

/// `limoe bench torch`: for each case, export, run the reference, check agreement, and print
/// both step times with their ratio.
pub fn torch(registry: &Registry) -> anyhow::Result<()> {
    if !torch_available() {
        println!(
            "torch: skipped: `python3 -c \"import torch, safetensors\"` fails; to compare with \
             PyTorch, `pip install torch safetensors`"
        );
        return Ok(());
    }
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    println!(
        "torch: limoe against the PyTorch reference ({REFERENCE}, same weights, batch, shapes and \
         routing), LIMoE, {threads} threads each"
    );
    let script = reference_script()?;
    let load_before = load_average();
    for Compared { case, target, .. } in &CASES {
        let dir = tempfile::tempdir()?;
        let exported = export(registry, case, dir.path())?;
        let mut reference = Reference::start(&script, dir.path(), threads)?;
        report_check(case.name, exported.loss, &reference.check)?;
        // Warm both up, then alternate rounds so that both see the same machine load.
        let (model, images, texts) = (&exported.model, &exported.images, &exported.texts);
        step_samples(model, images, texts, 0, case.warmup)?;
        reference.time(case.warmup)?;
        let per_round = case.steps.div_ceil(ROUNDS).max(1);
        let (mut ours, mut theirs) = ((Vec::new(), Vec::new()), (Vec::new(), Vec::new()));
        // Each round's ratio compares steps taken seconds apart: robust to slow load changes.
        let mut round_ratios = Vec::with_capacity(ROUNDS);
        for round in 0..ROUNDS {
            let first = case.warmup + round * per_round;
            std::thread::sleep(SETTLE);
            let (forward, step) = step_samples(model, images, texts, first, per_round)?;
            let limoe_round = Summary::of(&step).context("no timed steps")?.median;
            ours.0.extend(forward);
            ours.1.extend(step);
            std::thread::sleep(SETTLE);
            let (forward, step) = reference.time(per_round)?;
            let torch_round = Summary::of(&step).context("no timed steps")?.median;
            round_ratios.push(limoe_round / torch_round);
            theirs.0.extend(forward);
            theirs.1.extend(step);
        }
        let round_ratios = Summary::of(&round_ratios).context("no rounds")?;
        reference.finish()?;
        let summary = |s: &[f64]| Summary::of(s).context("no timed steps");
        let (forward, step) = (summary(&ours.0)?, summary(&ours.1)?);
        let (torch_forward, torch_step) = (summary(&theirs.0)?, summary(&theirs.1)?);
        let flops = plan::cost(&exported.config, exported.batch, exported.batch).step_flops;
        println!(
            "  {:<5} step ms   limoe fwd {:.1}, fwd+bwd {} = {:.1} GFLOP/s; torch fwd {:.1}, \
             fwd+bwd {} = {:.1} GFLOP/s",
            case.name,
            forward.median * 1e3,
            range(&step),
            flops / step.median / 1e9,
            torch_forward.median * 1e3,
            range(&torch_step),
            flops / torch_step.median / 1e9,
        );
        println!(
            "  {:<5} limoe/torch step time {} (batch {}, {} rounds of {per_round} steps each, \
             alternating, after {} warm-ups; per-round ratios: median {:.2}, {:.2}-{:.2})",
            case.name,
            against_target(step.median / torch_step.median, *target, true),
            exported.batch,
            ROUNDS,
            case.warmup,
            round_ratios.median,
            round_ratios.min,
            round_ratios.max,
        );
    }
    println!(
        "  check: one pass without routing noise, loss and the gradient of every parameter up \
         to {GRAD_MAX_VALUES} values; timing: medians (min-max), routing noise on"
    );
    if let (Some(before), Some(after)) = (load_before, load_average()) {
        println!(
            "  1-minute load average {before:.2} before, {after:.2} after ({threads} CPUs): other \
             processes competing for the cores slow both sides, PyTorch's OpenMP threads far \
             more (they spin at barriers); compare runs at a load below the CPU count"
        );
    }
    Ok(())
}

/// The 1-minute load average (Linux), if readable.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `limoe bench --export DIR`: writes each compared case to `DIR/<case>/` for
/// `python3 bench/reference.py DIR/<case>`.
pub fn export_all(registry: &Registry, dir: &Path) -> anyhow::Result<()> {
    for Compared { slug, case, .. } in &CASES {
        let case_dir = dir.join(slug);
        std::fs::create_dir_all(&case_dir)
            .with_context(|| format!("creating {}", case_dir.display()))?;
        let exported = export(registry, case, &case_dir)?;
        println!(
            "exported {} (loss {:.7}) to {}: python3 {REFERENCE} {} --check",
            case.name,
            exported.loss,
            case_dir.display(),
            case_dir.display()
        );
    }
    Ok(())
}

/// Whether `python3` can import torch and safetensors.
fn torch_available() -> bool {
    Command::new("python3")
        .args(["-c", "import torch, safetensors"])
        .output()
        .is_ok_and(|out| out.status.success())
}

/// The reference script: under the working directory (the repository root), else next to
/// the sources this binary was built from.
fn reference_script() -> anyhow::Result<PathBuf> {
    let candidates = [
        PathBuf::from(REFERENCE),
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(REFERENCE),
    ];
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .with_context(|| {
            format!("{REFERENCE} not found (run `limoe bench` from the repository root)")
        })
}

/// Builds the case's LIMoE model, runs the check pass (routing noise off) and writes
/// `config.json`, `weights.safetensors`, `batch.safetensors`, `grads.safetensors` and
/// `limoe.json` to `dir`.
fn export(registry: &Registry, case: &Case, dir: &Path) -> anyhow::Result<Exported> {
    let spec = load(registry, case.spec, case.sets, "limoe")?;
    let config = spec.model.clone();
    let device = limoe_model::device::open(spec.train.device)?;
    let params = Params::new(spec.seed);
    let model = Model::new(&config, &params, &device)?;
    let batch = spec.train.batch_size / spec.train.accumulation;
    let (images, texts) = inputs(&config, batch, &device)?;

    // The same parameters (fetched by name) without routing noise: a deterministic function.
    let quiet = ModelSpec {
        moe: MoeSpec {
            noise: 0.0,
            ..config.moe.clone()
        },
        ..config.clone()
    };
    let output = Model::new(&quiet, &params, &device)?.forward(
        &images,
        &texts,
        RouteMode::Train {
            noise_seed: 0,
            first_example: 0,
        },
    )?;
    let grads = output.loss.backward()?;
    let scalar = |t: &Tensor| -> anyhow::Result<f64> { Ok(t.to_dtype(DType::F64)?.to_scalar()?) };
    let loss = scalar(&output.loss)?;

    let mut weights = HashMap::new();
    let mut gradients = HashMap::new();
    for (name, var) in params.vars() {
        let tensor = var.as_tensor();
        if tensor.elem_count() <= GRAD_MAX_VALUES {
            let grad = match grads.get(tensor) {
                Some(g) => g.clone(),
                None => tensor.zeros_like()?,
            };
            gradients.insert(name.clone(), grad.to_device(&Device::Cpu)?);
        }
        weights.insert(name, tensor.to_device(&Device::Cpu)?);
    }
    let batch_tensors = HashMap::from([
        (
            "patches".to_string(),
            images.patches.to_device(&Device::Cpu)?,
        ),
        (
            "ids".to_string(),
            texts.tokens.to_dtype(DType::I64)?.to_device(&Device::Cpu)?,
        ),
        (
            "text_weights".to_string(),
            texts.mask.weights.squeeze(2)?.to_device(&Device::Cpu)?,
        ),
    ]);
    candle_core::safetensors::save(&weights, dir.join("weights.safetensors"))?;
    candle_core::safetensors::save(&gradients, dir.join("grads.safetensors"))?;
    candle_core::safetensors::save(&batch_tensors, dir.join("batch.safetensors"))?;
    let ours = json!({
        "loss": loss,
        "contrastive": scalar(&output.objective)?,
        "aux": scalar(&output.aux)?,
    });
    write_json(&dir.join("limoe.json"), &ours)?;
    write_json(&dir.join("config.json"), &config_json(&config, case))?;
    Ok(Exported {
        model,
        config,
        images,
        texts,
        batch,
        loss,
    })
}

/// What the reference needs to know of the model, the loss and the timing.
fn config_json(config: &ModelSpec, case: &Case) -> Value {
    let pooling = |p: Pooling| match p {
        Pooling::Mean => "mean",
        Pooling::Map => "map",
    };
    let weights = |terms: &limoe_model::moe::LossTerms<f64>| {
        terms
            .entries()
            .into_iter()
            .map(|(name, w)| (name.to_string(), json!(w)))
            .collect::<serde_json::Map<_, _>>()
    };
    let moe = &config.moe;
    let aux = aux_weights(&config.aux);
    let global_experts = config.aux.global_experts;
    json!({
        "width": config.width,
        "depth": config.depth,
        "heads": config.heads,
        "mlp_dim": config.mlp_dim,
        "moe_blocks": config.active_moe_blocks(),
        "moe": {
            "experts": moe.experts,
            "top_k": moe.top_k,
            "capacity": moe.capacity.train,
            "bpr": moe.bpr,
            "noise": moe.noise,
            "global_experts": {"image": global_experts.image, "text": global_experts.text},
        },
        "aux": {"image": weights(&aux.modality.image), "text": weights(&aux.modality.text)},
        "pooling": {"image": pooling(config.pooling.image), "text": pooling(config.pooling.text)},
        "tolerance": {"loss": LOSS_TOLERANCE, "grad": GRAD_TOLERANCE},
        "timing": {"warmup": case.warmup, "steps": case.steps},
    })
}

fn write_json(path: &Path, value: &Value) -> anyhow::Result<()> {
    std::fs::write(path, serde_json::to_string_pretty(value)?)
        .with_context(|| format!("writing {}", path.display()))
}

/// The reference model running in `--serve` mode: its check-pass JSON, and a pipe to ask it
/// for timed steps.
struct Reference {
    child: std::process::Child,
    input: Option<std::process::ChildStdin>,
    output: BufReader<std::process::ChildStdout>,
    check: Value,
}

impl Reference {
    /// Starts the reference on an exported directory and reads its check pass.
    fn start(script: &Path, dir: &Path, threads: usize) -> anyhow::Result<Reference> {
        let mut child = Command::new("python3")
            .arg(script)
            .arg(dir)
            .args(["--threads", &threads.to_string(), "--serve"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("running python3 {}", script.display()))?;
        let input = child.stdin.take();
        let output = BufReader::new(child.stdout.take().context("no pipe from the reference")?);
        let mut reference = Reference {
            child,
            input,
            output,
            check: Value::Null,
        };
        reference.check = reference.read()?;
        Ok(reference)
    }

    /// The next JSON line; on end of output, the error with the end of the child's stderr.
    fn read(&mut self) -> anyhow::Result<Value> {
        let mut line = String::new();
        if self.output.read_line(&mut line)? == 0 {
            let mut stderr = String::new();
            if let Some(mut err) = self.child.stderr.take() {
                err.read_to_string(&mut stderr)?;
            }
            let tail: Vec<&str> = stderr.lines().rev().take(8).collect();
            anyhow::bail!(
                "the PyTorch reference stopped:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        serde_json::from_str(&line).with_context(|| format!("reading the reference's `{line}`"))
    }

    /// Forward and forward + backward times in seconds of `steps` reference steps.
    fn time(&mut self, steps: usize) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
        let input = self
            .input
            .as_mut()
            .context("the reference's input is closed")?;
        writeln!(input, "{steps}")?;
        input.flush()?;
        let answer = self.read()?;
        let seconds = |key: &str| -> anyhow::Result<Vec<f64>> {
            answer
                .get(key)
                .and_then(Value::as_array)
                .with_context(|| format!("the reference answered no {key}"))?
                .iter()
                .map(|v| {
                    v.as_f64()
                        .map(|ms| ms / 1e3)
                        .context("a time is not a number")
                })
                .collect()
        };
        Ok((seconds("fwd_ms")?, seconds("step_ms")?))
    }

    /// Closes the reference's input and waits for it to end.
    fn finish(mut self) -> anyhow::Result<()> {
        drop(self.input.take());
        let status = self.child.wait()?;
        anyhow::ensure!(
            status.success(),
            "the PyTorch reference ended with {status}"
        );
        Ok(())
    }
}

/// Prints the check pass: both losses, their relative difference, the worst gradient.
fn report_check(name: &str, ours: f64, theirs: &Value) -> anyhow::Result<()> {
    let number = |path: &[&str]| {
        path.iter()
            .try_fold(theirs, |v, key| v.get(key))
            .and_then(Value::as_f64)
            .with_context(|| format!("the reference printed no {}", path.join(".")))
    };
    let agree = theirs
        .get("agree")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    println!(
        "  {name:<5} check     loss limoe {ours:.7} torch {:.7}: rel err {:.1e} (contrastive \
         {:.1e}, aux {:.1e}); gradients of {} params: worst rel err {:.1e} ({}); {}",
        number(&["loss"])?,
        number(&["loss_rel_err", "loss"])?,
        number(&["loss_rel_err", "contrastive"])?,
        number(&["loss_rel_err", "aux"])?,
        number(&["grad_rel_err", "params"])?,
        number(&["grad_rel_err", "worst"])?,
        theirs
            .pointer("/grad_rel_err/param")
            .and_then(Value::as_str)
            .unwrap_or("-"),
        if agree {
            "agree"
        } else {
            "DISAGREE (the timings below compare different functions)"
        },
    );
    Ok(())
}

/// `median (min-max)` in ms.
fn range(s: &Summary) -> String {
    format!(
        "{:.1} ({:.1}-{:.1})",
        s.median * 1e3,
        s.min * 1e3,
        s.max * 1e3
    )
}
