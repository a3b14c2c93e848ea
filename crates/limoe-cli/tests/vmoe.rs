//! V-MoE through the `limoe` binary: supervised pre-training, the inference-capacity
//! evaluation, and transfer to a labelled benchmark (`finetune`, full and head-only), from a
//! V-MoE checkpoint and from a LIMoE checkpoint's image side, with exact resume.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use safetensors::SafeTensors;
use support::{finished_output, limoe, text};

const SPEC: &str = r#"
name: vt
seed: 0
data:
  sources:
    - synthetic: {pairs: 192, classes: [red circle, blue square, green triangle, yellow cross]}
  row_group_rows: 64
model:
  arch: vmoe
  size: tiny
  width: 32
  depth: 2
  mlp_dim: 64
  heads: 2
  image_size: 16
  patch: 4
  classifier: {classes: 4}
  moe: {experts: 4, top_k: 1, every: 2}
  aux: {local_entropy: {image: 0, text: 0}, global_entropy: {image: 0, text: 0}, importance: 0.01, load: 0.01}
train: {steps: 6, batch_size: 16, warmup_steps: 1, eval_every: 6, checkpoint_every: 6, log_every: 1, monitor: {pairs: 32}}
eval:
  batch_size: 32
  benchmarks:
    shapes:
      source: {synthetic: {pairs: 160, classes: [purple circle, red square, blue triangle]}}
      splits: {val: 0.1, test: 0.3}
  few_shot: {shots: [1], datasets: [shapes]}
  inference_capacity: {factors: [0.5, 8.0], bpr: [true, false]}
stages:
  - {id: ingest, uses: ingest}
  - {id: benchmarks, uses: benchmarks}
  - {id: train, uses: train, needs: [ingest]}
  - {id: eval, uses: eval, needs: [train, ingest, benchmarks]}
  - id: transfer-full
    uses: finetune
    needs: [train, benchmarks]
    with: {dataset: shapes, mode: full, steps: 4, batch_size: 8, warmup_steps: 1, checkpoint_every: 2}
  - id: transfer-head
    uses: finetune
    needs: [train, benchmarks]
    with: {dataset: shapes, mode: head, steps: 4, batch_size: 8, warmup_steps: 1, lr: 0.01}
"#;

/// Writes the spec into `dir` and runs it there with `sets`; fails with the output when
/// the run fails.
fn run(dir: &Path, sets: &[&str]) -> String {
    std::fs::write(dir.join("vt.yaml"), SPEC).unwrap();
    let mut args = vec!["run".to_owned(), "vt.yaml".to_owned()];
    for set in sets {
        args.extend(["--set".to_owned(), (*set).to_owned()]);
    }
    let out = limoe(&args, dir);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "limoe run failed:\n{stdout}{stderr}");
    stderr
}

fn summary(stage_dir: &Path) -> BTreeMap<String, f64> {
    let bytes = std::fs::read(stage_dir.join("summary.json")).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// Every tensor of the newest checkpoint of `stage_dir`, as raw bytes by name.
fn weights(stage_dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let checkpoints = stage_dir.join("checkpoints");
    let newest = std::fs::read_dir(&checkpoints)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("state.json").is_file())
        .max()
        .unwrap();
    let bytes = std::fs::read(newest.join("model.safetensors")).unwrap();
    let tensors = SafeTensors::deserialize(&bytes).unwrap();
    (tensors.tensors().into_iter())
        .map(|(name, view)| (name, view.data().to_vec()))
        .collect()
}

fn is_head(name: &str) -> bool {
    name.starts_with("classifier.")
}

#[test]
fn vmoe_pretrains_evaluates_capacities_and_transfers() {
    let dir = tempfile::tempdir().unwrap();
    run(dir.path(), &[]);
    let runs = dir.path().join("runs/vt");
    let eval = summary(&finished_output(&runs, "eval-"));
    assert!((0.0..=1.0).contains(&eval["all/top1"]), "{eval:?}");
    assert_eq!(eval["all/chance_top1"], 0.25);
    assert!(eval.contains_key("shapes/few_shot_1"), "{eval:?}");
    for bpr in ["bpr", "no_bpr"] {
        let at =
            |factor: &str, metric: &str| eval[&format!("all/capacity_{factor}_{bpr}_{metric}")];
        assert_eq!(at("8", "dropped"), 0.0, "capacity 8 drops nothing");
        assert!(
            at("0.5", "dropped") >= 0.5,
            "capacity 0.5 keeps at most half: {eval:?}"
        );
        assert!(at("0.5", "gflops") < at("8", "gflops"));
        assert!((0.0..=1.0).contains(&at("0.5", "top1")));
    }
    // Capacity 8 drops nothing, so it scores what the spec's dropless evaluation scores.
    assert_eq!(eval["all/capacity_8_bpr_top1"], eval["all/top1"]);
    assert_eq!(eval["all/capacity_8_bpr_gflops"], eval["all/gflops"]);

    let pretrained = weights(&finished_output(&runs, "train-"));
    let full_dir = finished_output(&runs, "transfer-full-");
    let head_dir = finished_output(&runs, "transfer-head-");
    for (stage, dir) in [("full", &full_dir), ("head", &head_dir)] {
        let scored = summary(dir);
        assert!(
            (0.0..=1.0).contains(&scored["shapes/top1"]),
            "{stage}: {scored:?}"
        );
        assert_eq!(scored["shapes/chance_top1"], 1.0 / 3.0);
    }
    let (full, head) = (weights(&full_dir), weights(&head_dir));
    assert_eq!(
        head["classifier.weight"].len(),
        3 * 32 * 4,
        "a new 3-class head"
    );
    for (name, bytes) in &pretrained {
        if is_head(name) {
            continue;
        }
        assert_eq!(&head[name], bytes, "head-only transfer changed `{name}`");
    }
    let changed = (pretrained.iter())
        .filter(|(name, bytes)| !is_head(name) && &full[*name] != *bytes)
        .count();
    assert!(
        changed > 0,
        "the full transfer changed no backbone parameter"
    );
    assert!(head["classifier.weight"] != full["classifier.weight"]);

    // A finetune killed after its checkpoint of step 2 resumes to the same weights.
    let partial = PathBuf::from(format!("{}.partial", full_dir.display()));
    std::fs::rename(&full_dir, &partial).unwrap();
    for file in ["manifest.json", "summary.json"] {
        std::fs::remove_file(partial.join(file)).unwrap();
    }
    std::fs::remove_dir_all(partial.join("checkpoints/step-00000004")).unwrap();
    let stderr = run(dir.path(), &[]);
    assert!(stderr.contains("resuming after step 2"), "{stderr}");
    assert_eq!(weights(&finished_output(&runs, "transfer-full-")), full);
}

/// A LIMoE checkpoint transfers its image side, and its zero-shot accuracy is evaluated
/// at inference capacities too.
#[test]
fn a_limoe_checkpoint_transfers_its_image_side() {
    let dir = tempfile::tempdir().unwrap();
    run(
        dir.path(),
        &[
            "model.arch=limoe",
            "model.classifier=null",
            "model.aux.local_entropy={image: 0.01, text: 0.01}",
            "stages=[{id: ingest, uses: ingest}, {id: benchmarks, uses: benchmarks}, {id: train, \
             uses: train, needs: [ingest]}, {id: eval, uses: eval, needs: [train, ingest, \
             benchmarks]}, {id: transfer-head, uses: finetune, needs: [train, benchmarks], \
             with: {dataset: shapes, mode: head, steps: 4, batch_size: 8}}]",
        ],
    );
    let runs = dir.path().join("runs/vt");
    let pretrained = weights(&finished_output(&runs, "train-"));
    let transferred = weights(&finished_output(&runs, "transfer-head-"));
    assert!(
        pretrained.contains_key("token_embed.table"),
        "a contrastive checkpoint"
    );
    for (name, bytes) in &transferred {
        if is_head(name) {
            continue;
        }
        assert_eq!(
            Some(bytes),
            pretrained.get(name),
            "`{name}` is the LIMoE model's"
        );
    }
    assert!(!transferred.keys().any(|n| n.starts_with("text_head")));
    let scored = summary(&finished_output(&runs, "transfer-head-"));
    assert!((0.0..=1.0).contains(&scored["shapes/top1"]));
    let eval = summary(&finished_output(&runs, "eval-"));
    for bpr in ["bpr", "no_bpr"] {
        let key = format!("synthetic/capacity_0.5_{bpr}_zero_shot_top1");
        assert!((0.0..=1.0).contains(&eval[&key]), "{key}: {eval:?}");
        assert!(eval[&format!("all/capacity_0.5_{bpr}_dropped")] > 0.0);
    }
    assert!(
        !eval
            .keys()
            .any(|k| k.contains("capacity") && k.contains("retrieval"))
    );
}
