//! `limoe checkpoint consolidate`: one checkpoint of a trained run as a single safetensors
//! file (the newest, a step's, the best), and the inputs it refuses.

mod support;

use std::path::Path;

use limoe_train::checkpoint::{CheckpointState, STATE_FILE, dir_name};
use safetensors::SafeTensors;
use support::equivalence::{assert_ok, run_args, train_output, weights, weights_in};
use support::{limoe, text};

/// The metadata of a safetensors file.
fn metadata(file: &Path) -> std::collections::HashMap<String, String> {
    let bytes = std::fs::read(file).unwrap();
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    meta.metadata().clone().unwrap_or_default()
}

/// `limoe checkpoint consolidate ARGS` in `cwd`.
fn consolidate(args: &[&str], cwd: &Path) -> std::process::Output {
    let args: Vec<&str> = ["checkpoint", "consolidate"]
        .into_iter()
        .chain(args.iter().copied())
        .collect();
    limoe(&args, cwd)
}

#[test]
fn consolidate_writes_the_chosen_checkpoint_whole_and_refuses_what_it_cannot() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let mut args = run_args("limoe");
    args.extend([
        "--set".to_owned(),
        "train={steps: 4, batch_size: 16, warmup_steps: 1, checkpoint_every: 2, \
         eval_every: 4, keep_checkpoints: 4}"
            .to_owned(),
    ]);
    assert_ok(&limoe(&args, cwd), "training");
    let train = train_output(cwd);

    let newest = cwd.join("newest.safetensors");
    let out = consolidate(&["runs/tiny", "-o", newest.to_str().unwrap()], cwd);
    assert_ok(&out, "consolidate the newest");
    assert!(
        text(&out.stdout).contains("of step 4"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(weights_in(&newest), weights(&train, 4));
    assert!(
        !weights_in(&newest)
            .iter()
            .any(|(name, _)| name.starts_with("m."))
    );
    let meta = metadata(&newest);
    assert_eq!(meta["limoe.step"], "4");
    assert!(meta["limoe.spec"].contains("name: tiny"), "{meta:?}");

    let second = cwd.join("second.safetensors");
    let out = consolidate(
        &["tiny", "--step", "2", "-o", second.to_str().unwrap()],
        cwd,
    );
    assert_ok(&out, "consolidate step 2 of the run named by experiment");
    assert_eq!(weights_in(&second), weights(&train, 2));

    // The best by the run's train.best (the loss by default, lowest wins).
    let loss = |step: u64| {
        let state = std::fs::read(
            train
                .join("checkpoints")
                .join(dir_name(step))
                .join(STATE_FILE),
        );
        let state: CheckpointState = serde_json::from_slice(&state.unwrap()).unwrap();
        state.metrics["loss"]
    };
    let best_step = if loss(2) < loss(4) { 2 } else { 4 };
    let best = cwd.join("best.safetensors");
    assert_ok(
        &consolidate(&["runs/tiny", "--best", "-o", best.to_str().unwrap()], cwd),
        "consolidate the best",
    );
    assert_eq!(metadata(&best)["limoe.step"], best_step.to_string());

    let one = train.join("checkpoints").join(dir_name(2));
    let direct = cwd.join("direct.safetensors");
    let out = consolidate(
        &[one.to_str().unwrap(), "-o", direct.to_str().unwrap()],
        cwd,
    );
    assert_ok(&out, "consolidate a checkpoint directory");
    assert_eq!(weights_in(&direct), weights(&train, 2));
    assert!(!metadata(&direct).contains_key("limoe.spec"));

    let refused = |args: &[&str], message: &str| {
        let out = consolidate(args, cwd);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    };
    refused(
        &["runs/tiny", "--step", "3", "-o", "x.safetensors"],
        "no checkpoint of step 3",
    );
    refused(
        &["runs/tiny", "--step", "3", "-o", "x.safetensors"],
        "it holds steps 2, 4",
    );
    refused(
        &[one.to_str().unwrap(), "--best", "-o", "x.safetensors"],
        "is one checkpoint; --step and --best choose among a run's",
    );
    refused(
        &["nothing-here", "-o", "x.safetensors"],
        "no run at nothing-here",
    );
    // A changed checkpoint file is refused, and the file already written stays as it was.
    let model = one.join("model.safetensors");
    let mut bytes = std::fs::read(&model).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&model, bytes).unwrap();
    let before = std::fs::read(&direct).unwrap();
    refused(
        &[one.to_str().unwrap(), "-o", direct.to_str().unwrap()],
        "does not match the SHA-256",
    );
    assert_eq!(std::fs::read(&direct).unwrap(), before);
    assert!(!cwd.join("x.safetensors").exists());
}
