//! Two runs that must train alike (two ranks and one process, accumulation and one pass):
//! their shared shape, and the comparison of their logs and final weights.

use std::path::{Path, PathBuf};
use std::process::Output;

use limoe_core::logs::MetricsRow;
use limoe_train::checkpoint::dir_name;
use safetensors::{Dtype, SafeTensors};

use super::{finished_output, root, text};

/// Steps of [`run_args`].
pub const STEPS: u64 = 20;

/// Differences allowed between a run on one process and on two ranks (or resumed across
/// them, or accumulating micro-batches): relative for each step's loss and gradient norm,
/// absolute for the final weights. Not exact: two ranks (or micro-batches) add their halves
/// of the gradient in another order than one pass adds the whole, and training carries the
/// rounding on. Measured on the 20-step dense run:
/// losses within 2.6e-7, weights within 5e-5 (attention biases, whose near-zero gradients
/// AdamW's normalised step turns into whole steps); gradient norms drift fastest (1e-4 by
/// step 37).
pub const LOSS_TOLERANCE: f64 = 1e-4;
pub const GRAD_NORM_TOLERANCE: f64 = 1e-3;
pub const WEIGHT_TOLERANCE: f32 = 1e-3;

/// The tiny experiment shrunk to 20 steps of 64 pairs, ingest and train only, with `arch`.
pub fn run_args(arch: &str) -> Vec<String> {
    let tiny = root().join("experiments/tiny.yaml");
    [
        "run",
        tiny.to_str().unwrap(),
        "--set",
        "data.sources=[{synthetic: {pairs: 320}}]",
        "--set",
        &format!("model.arch={arch}"),
        "--set",
        &format!(
            "train={{steps: {STEPS}, batch_size: 64, warmup_steps: 2, eval_every: 10, \
             checkpoint_every: 10, log_every: 1}}"
        ),
        "--set",
        "stages=[{id: ingest, uses: ingest}, {id: train, uses: train, needs: [ingest]}]",
    ]
    .map(String::from)
    .to_vec()
}

/// Fails the test with the output of a command that failed.
pub fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// The finished train output of a run of [`run_args`] in `cwd`.
pub fn train_output(cwd: &Path) -> PathBuf {
    finished_output(&cwd.join("runs/tiny"), "train-")
}

/// The weights of a train output's checkpoint of `step` by name, as f32 values.
pub fn weights(train: &Path, step: u64) -> Vec<(String, Vec<f32>)> {
    let file = train
        .join("checkpoints")
        .join(dir_name(step))
        .join("model.safetensors");
    weights_in(&file)
}

/// The tensors of a safetensors file by name, as f32 values, read with the safetensors crate.
pub fn weights_in(file: &Path) -> Vec<(String, Vec<f32>)> {
    let bytes = std::fs::read(file).unwrap();
    let tensors = SafeTensors::deserialize(&bytes).unwrap();
    let mut weights: Vec<_> = tensors
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            assert_eq!(view.dtype(), Dtype::F32, "{name}");
            let values = (view.data().chunks_exact(4))
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (name, values)
        })
        .collect();
    weights.sort_by(|a, b| a.0.cmp(&b.0));
    weights
}

/// Each step's loss and gradient norm in two runs' logs agree within the tolerances.
pub fn assert_same_losses(a: &[MetricsRow], b: &[MetricsRow]) {
    for (x, y) in a.iter().zip(b) {
        let off = (x.loss - y.loss).abs() / x.loss.abs();
        assert!(
            off < LOSS_TOLERANCE,
            "step {}: losses {} and {}",
            x.step,
            x.loss,
            y.loss
        );
        assert!(
            (x.grad_norm - y.grad_norm).abs() / x.grad_norm < GRAD_NORM_TOLERANCE,
            "step {}: gradient norms {} and {}",
            x.step,
            x.grad_norm,
            y.grad_norm
        );
    }
}

/// The final weights of two train outputs agree within [`WEIGHT_TOLERANCE`].
pub fn assert_same_weights(a: &Path, b: &Path, step: u64) {
    let (wa, wb) = (weights(a, step), weights(b, step));
    assert_eq!(
        wa.iter().map(|w| &w.0).collect::<Vec<_>>(),
        wb.iter().map(|w| &w.0).collect::<Vec<_>>()
    );
    for ((name, x), (_, y)) in wa.iter().zip(&wb) {
        let worst = x
            .iter()
            .zip(y)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0, f32::max);
        assert!(
            worst < WEIGHT_TOLERANCE,
            "{name}: weights differ by {worst}"
        );
    }
}
