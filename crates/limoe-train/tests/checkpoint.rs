//! Checkpoints: bitwise round trip, complete-only discovery, retention, checked loading and
//! exact optimiser resume.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};
use limoe_train::checkpoint::{
    self, BestBy, Goal, MODEL_FILE, OPTIMIZER_FILE, Retention, STATE_FILE, dir_name,
};
use limoe_train::optim::{AdamW, AdamWConfig};
use serde_json::json;

const SHAPES: [(&str, &[usize]); 3] = [
    ("encoder.block0.attention.qkv.weight", &[3, 4]),
    ("encoder.block0.attention.qkv.bias", &[4]),
    ("log_logit_scale", &[]),
];

/// Parameters with values that depend on `seed`.
fn params(seed: f32) -> Vec<(String, Var)> {
    SHAPES
        .iter()
        .map(|&(name, shape)| {
            let n: usize = shape.iter().product();
            let data: Vec<f32> = (0..n).map(|i| (i as f32 * 0.731 + seed).sin()).collect();
            let var = Var::from_vec(data, shape, &Device::Cpu).unwrap();
            (name.to_string(), var)
        })
        .collect()
}

fn optimizer(params: &[(String, Var)]) -> AdamW {
    let config = AdamWConfig {
        weight_decay: 0.05,
        ..AdamWConfig::default()
    };
    AdamW::new(params, config).unwrap()
}

/// Gradients of step `step` (1-based): a fixed function of the step and the parameter values.
fn step(params: &[(String, Var)], opt: &mut AdamW, step: u64) {
    let mut grads = GradStore::default();
    for (i, (_, var)) in params.iter().enumerate() {
        let g = ((var.as_tensor() * 0.5).unwrap() + (step as f64 * 0.1 - i as f64)).unwrap();
        grads.insert(var.as_tensor(), g.cos().unwrap());
    }
    opt.step(&grads, 1e-2 / step as f64, 1.0).unwrap();
}

fn bits(t: &Tensor) -> Vec<u32> {
    let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
    v.into_iter().map(f32::to_bits).collect()
}

fn assert_same(a: &[(String, Var)], oa: &AdamW, b: &[(String, Var)], ob: &AdamW) {
    assert_eq!(oa.step_count(), ob.step_count());
    for ((name, va), (_, vb)) in a.iter().zip(b) {
        assert_eq!(bits(va), bits(vb), "{name}");
        let (ma, sa) = oa.moments(name).unwrap();
        let (mb, sb) = ob.moments(name).unwrap();
        assert_eq!(
            (bits(ma), bits(sa)),
            (bits(mb), bits(sb)),
            "moments of {name}"
        );
    }
}

fn save(root: &Path, at: u64, params: &[(String, Var)], opt: &AdamW, loss: f64) {
    let metrics = BTreeMap::from([("loss".to_string(), loss)]);
    let state = checkpoint::whole_state(params, opt, None).unwrap();
    let extra = json!({"loader": at});
    checkpoint::save(root, at, &state, opt.step_count(), &metrics, &extra).unwrap();
}

/// The checkpoint of step 1 of `params` with a fresh optimiser, no metrics and no extra.
fn save_bare(root: &Path, params: &[(String, Var)]) -> std::path::PathBuf {
    let state = checkpoint::whole_state(params, &optimizer(params), None).unwrap();
    checkpoint::save(root, 1, &state, 0, &BTreeMap::new(), &json!(null)).unwrap()
}

#[test]
fn round_trip_is_bitwise_and_restores_state() {
    let root = tempfile::tempdir().unwrap();
    let (src, mut opt) = {
        let p = params(0.0);
        let o = optimizer(&p);
        (p, o)
    };
    for s in 1..=3 {
        step(&src, &mut opt, s);
    }
    let extra = json!({"loader": {"epoch": 1, "row": 17}, "rng": [1, 2, 3], "spec": "ab12"});
    let metrics = BTreeMap::from([("loss".to_string(), 0.25)]);
    let state = checkpoint::whole_state(&src, &opt, None).unwrap();
    let dir = checkpoint::save(root.path(), 3, &state, opt.step_count(), &metrics, &extra).unwrap();
    assert_eq!(dir, root.path().join("step-00000003"));
    for file in [MODEL_FILE, OPTIMIZER_FILE, STATE_FILE] {
        assert!(dir.join(file).is_file(), "{file}");
    }

    let dst = params(5.0);
    let mut restored = optimizer(&dst);
    let state = checkpoint::load(&dir, &dst, &mut restored, None).unwrap();
    assert_eq!((state.step, state.optimizer_step), (3, 3));
    assert_eq!((state.metrics, state.extra), (metrics, extra));
    assert_same(&src, &opt, &dst, &restored);
}

#[test]
fn resumed_optimizer_takes_identical_steps() {
    let root = tempfile::tempdir().unwrap();
    let straight = params(1.0);
    let mut straight_opt = optimizer(&straight);
    let first = params(1.0);
    let mut first_opt = optimizer(&first);
    for s in 1..=2 {
        step(&straight, &mut straight_opt, s);
        step(&first, &mut first_opt, s);
    }
    save(root.path(), 2, &first, &first_opt, 1.0);
    drop((first, first_opt));

    let resumed = params(9.0);
    let mut resumed_opt = optimizer(&resumed);
    let latest = checkpoint::latest(root.path()).unwrap().unwrap();
    checkpoint::load(&latest.path, &resumed, &mut resumed_opt, None).unwrap();
    for s in 3..=5 {
        step(&straight, &mut straight_opt, s);
        step(&resumed, &mut resumed_opt, s);
    }
    assert_same(&straight, &straight_opt, &resumed, &resumed_opt);
}

#[test]
fn latest_ignores_partial_checkpoints() {
    let root = tempfile::tempdir().unwrap();
    assert_eq!(checkpoint::latest(&root.path().join("none")).unwrap(), None);
    let p = params(0.0);
    let opt = optimizer(&p);
    save(root.path(), 1, &p, &opt, 1.0);
    save(root.path(), 2, &p, &opt, 1.0);
    // A kill before state.json: the tensors are there, the state is not.
    let killed = root.path().join(dir_name(3));
    std::fs::create_dir(&killed).unwrap();
    for file in [MODEL_FILE, OPTIMIZER_FILE] {
        std::fs::copy(root.path().join(dir_name(2)).join(file), killed.join(file)).unwrap();
    }
    // A kill mid-save, and a truncated state.
    std::fs::create_dir(root.path().join(".tmp-step-00000004")).unwrap();
    let truncated = root.path().join(dir_name(5));
    std::fs::create_dir(&truncated).unwrap();
    std::fs::write(truncated.join(STATE_FILE), b"{\"step\": 5").unwrap();

    let latest = checkpoint::latest(root.path()).unwrap().unwrap();
    assert_eq!(
        (latest.step, latest.path),
        (2, root.path().join(dir_name(2)))
    );
    assert_eq!(checkpoint::list(root.path()).unwrap().len(), 2);
}

#[test]
fn retention_keeps_last_n_and_the_best() {
    let root = tempfile::tempdir().unwrap();
    let p = params(0.0);
    let opt = optimizer(&p);
    for (at, loss) in [(1, 5.0), (2, 1.0), (3, 4.0), (4, 3.0), (5, 2.0)] {
        save(root.path(), at, &p, &opt, loss);
    }
    std::fs::create_dir(root.path().join(".tmp-step-00000006")).unwrap();
    std::fs::create_dir(root.path().join(dir_name(7))).unwrap();
    std::fs::write(root.path().join("metrics.parquet"), b"not ours").unwrap();

    let by = |goal| BestBy {
        metric: "loss".into(),
        goal,
    };
    assert_eq!(
        checkpoint::best(root.path(), &by(Goal::Lower))
            .unwrap()
            .unwrap()
            .step,
        2
    );
    assert_eq!(
        checkpoint::best(root.path(), &by(Goal::Higher))
            .unwrap()
            .unwrap()
            .step,
        1
    );
    let retention = Retention {
        keep_last: 2,
        best: Some(by(Goal::Lower)),
    };
    let removed = checkpoint::retain(root.path(), &retention).unwrap();
    let names = |paths: Vec<std::path::PathBuf>| -> Vec<String> {
        paths
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    };
    assert_eq!(
        names(removed),
        [
            ".tmp-step-00000006",
            "step-00000001",
            "step-00000003",
            "step-00000007"
        ]
    );
    let kept: Vec<u64> = checkpoint::list(root.path())
        .unwrap()
        .iter()
        .map(|c| c.step)
        .collect();
    assert_eq!(kept, [2, 4, 5]);
    assert!(root.path().join("metrics.parquet").is_file());

    let retention = Retention {
        keep_last: 1,
        best: Some(by(Goal::Higher)),
    };
    checkpoint::retain(root.path(), &retention).unwrap();
    let kept: Vec<u64> = checkpoint::list(root.path())
        .unwrap()
        .iter()
        .map(|c| c.step)
        .collect();
    assert_eq!(kept, [4, 5]); // 4 is now the highest loss left
}

/// Loads into `target` and returns the error message; the target must stay untouched.
fn load_error(dir: &Path, target: &[(String, Var)]) -> String {
    let before: Vec<Vec<u32>> = target.iter().map(|(_, v)| bits(v)).collect();
    let mut opt = optimizer(target);
    let err = checkpoint::load(dir, target, &mut opt, None).unwrap_err();
    let after: Vec<Vec<u32>> = target.iter().map(|(_, v)| bits(v)).collect();
    assert_eq!(before, after);
    assert_eq!(opt.step_count(), 0);
    format!("{err:#}")
}

#[test]
fn loading_a_mismatched_checkpoint_names_the_tensor_and_file() {
    let root = tempfile::tempdir().unwrap();
    let p = params(0.0);
    let dir = save_bare(root.path(), &p);

    let mut missing = params(2.0);
    missing.push((
        "encoder.block9.norm1.scale".into(),
        Var::ones(4, candle_core::DType::F32, &Device::Cpu).unwrap(),
    ));
    let err = load_error(&dir, &missing);
    assert!(
        err.contains("`encoder.block9.norm1.scale` is missing"),
        "{err}"
    );
    assert!(err.contains(MODEL_FILE), "{err}");

    let mut extra = params(2.0);
    extra.retain(|(n, _)| n != "log_logit_scale");
    let err = load_error(&dir, &extra);
    assert!(
        err.contains("`log_logit_scale` is not in the model"),
        "{err}"
    );
    assert!(err.contains(MODEL_FILE), "{err}");

    let mut reshaped = params(2.0);
    reshaped[0].1 = Var::zeros((4, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
    let err = load_error(&dir, &reshaped);
    assert!(
        err.contains(
            "`encoder.block0.attention.qkv.weight` has shape [3, 4], the model expects [4, 3]"
        ),
        "{err}"
    );
}

/// A same-size change of a tensor file (one flipped bit) is found by its hash before
/// anything is loaded, for training's resume and evaluation's parameters alike.
#[test]
fn a_changed_tensor_file_is_an_error_naming_it() {
    let root = tempfile::tempdir().unwrap();
    let p = params(0.0);
    let dir = save_bare(root.path(), &p);
    for file in [MODEL_FILE, OPTIMIZER_FILE] {
        let path = dir.join(file);
        let original = std::fs::read(&path).unwrap();
        let mut flipped = original.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        std::fs::write(&path, &flipped).unwrap();
        let err = load_error(&dir, &params(2.0));
        assert!(
            err.contains(&path.display().to_string()) && err.contains("changed after"),
            "{err}"
        );
        std::fs::write(&path, &original).unwrap();
    }
    let path = dir.join(MODEL_FILE);
    let mut flipped = std::fs::read(&path).unwrap();
    flipped[100] ^= 4;
    std::fs::write(&path, &flipped).unwrap();
    let target = params(2.0);
    let err = format!("{:#}", checkpoint::load_params(&dir, &target).unwrap_err());
    assert!(err.contains(MODEL_FILE), "{err}");
}

/// Weights holding NaN or infinity are refused at load, naming the file and the tensor.
#[test]
fn nonfinite_weights_are_an_error_naming_the_file_and_tensor() {
    let root = tempfile::tempdir().unwrap();
    let p = params(0.0);
    let bad = Var::from_vec(vec![0.5f32, 1.0, f32::NAN, 2.0], 4, &Device::Cpu).unwrap();
    let mut saved = p.clone();
    saved[1].1 = bad;
    let dir = save_bare(root.path(), &saved);
    let err = load_error(&dir, &params(2.0));
    assert!(
        err.contains(MODEL_FILE)
            && err.contains(
                "tensor `encoder.block0.attention.qkv.bias` holds the non-finite value NaN at flat index 2"
            ),
        "{err}"
    );
}
