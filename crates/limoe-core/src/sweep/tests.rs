use std::collections::HashSet;
use std::path::Path;

use super::*;
use crate::command::CommandStage;
use crate::spec::{Node, SweepSpec, Value};
use crate::stage::Registry;

/// The sweep section of `yaml` (a whole spec's `sweep:` body), typed.
fn sweep(yaml: &str) -> SweepSpec {
    let tree = Node::parse_yaml(yaml).unwrap();
    crate::spec::deserialize_all(&tree, &Default::default()).unwrap()
}

fn ids(trials: &[Trial]) -> Vec<String> {
    trials.iter().map(|t| t.id.clone()).collect()
}

fn value_at(trial: &Trial, path: &str) -> Value {
    trial
        .overrides
        .iter()
        .rev()
        .find(|o| o.path == path)
        .unwrap_or_else(|| panic!("{} sets no {path}", trial.id))
        .value
        .value
        .clone()
}

#[test]
fn grid_is_a_product_and_seeds_repeat_it() {
    let grid = "grid: {model.moe.experts: [4, 8], train.lr: [0.1, 0.01, 0.001]}";
    let trials = expand(&sweep(grid));
    assert_eq!(trials.len(), 6);
    assert_eq!(
        ids(&trials)[..4],
        [
            "experts=4,lr=0.1",
            "experts=4,lr=0.01",
            "experts=4,lr=0.001",
            "experts=8,lr=0.1"
        ]
    );
    let seeded = expand(&sweep(&format!("{grid}\nseeds: [0, 1]")));
    assert_eq!(seeded.len(), 12);
    assert_eq!(seeded[0].id, "experts=4,lr=0.1,seed=0");
    assert_eq!(seeded[1].id, "experts=4,lr=0.1,seed=1");
    assert_eq!(value_at(&seeded[1], "seed"), Value::Int(1));
    assert_eq!(value_at(&seeded[11], "model.moe.experts"), Value::Int(8));
    assert_eq!(value_at(&seeded[11], "train.lr"), Value::Float(0.001));
}

#[test]
fn grid_follows_the_file_order_not_the_alphabet() {
    let trials = expand(&sweep("grid: {train.lr: [1, 2], model.depth: [3]}"));
    assert_eq!(ids(&trials), ["lr=1,depth=3", "lr=2,depth=3"]);
}

#[test]
fn zip_pairs_values_and_a_length_mismatch_is_an_error() {
    let trials = expand(&sweep(
        "zip: {model.moe.experts: [4, 8, 16], model.moe.top_k: [1, 2, 4]}",
    ));
    assert_eq!(
        ids(&trials),
        [
            "experts=4,top_k=1",
            "experts=8,top_k=2",
            "experts=16,top_k=4"
        ]
    );
    assert_eq!(value_at(&trials[2], "model.moe.top_k"), Value::Int(4));

    let dir = tempfile::tempdir().unwrap();
    let file = write_spec(
        dir.path(),
        "sweep:\n  zip: {model.moe.experts: [4, 8], model.moe.top_k: [1]}\n",
    );
    let err = load_sweep(&file, &[], &registry()).unwrap_err().to_string();
    assert!(
        err.contains("zip lists differ in length (model.moe.experts: 2, model.moe.top_k: 1)"),
        "{err}"
    );
}

#[test]
fn cases_keep_file_order_and_cross_the_grid() {
    let s = sweep(
        "cases:\n  setting:\n    none: {model.aux.local_entropy: {image: 0, text: 0}}\n    \
         dense: {model.arch: dense}\n    base: {}\n  size: {small: {model.depth: 2}, big: {model.depth: 4}}\n\
         grid: {train.lr: [0.1]}\nseeds: [3]",
    );
    let trials = expand(&s);
    assert_eq!(
        ids(&trials),
        [
            "setting=none,size=small,lr=0.1,seed=3",
            "setting=none,size=big,lr=0.1,seed=3",
            "setting=dense,size=small,lr=0.1,seed=3",
            "setting=dense,size=big,lr=0.1,seed=3",
            "setting=base,size=small,lr=0.1,seed=3",
            "setting=base,size=big,lr=0.1,seed=3",
        ]
    );
    assert_eq!(
        value_at(&trials[2], "model.arch"),
        Value::Str("dense".into())
    );
    assert_eq!(
        trials[4].overrides.len(),
        3,
        "base sets only depth, lr and seed"
    );
    let entropy = &trials[0].overrides[0];
    assert_eq!(
        entropy.as_set(),
        r#"model.aux.local_entropy={"image":0,"text":0}"#
    );
}

#[test]
fn random_is_reproducible_and_stays_in_range() {
    let text = |seed: u64| {
        format!(
            "random:\n  trials: 50\n  seed: {seed}\n  params:\n    train.lr: {{log_uniform: [1e-5, 1e-1]}}\n    \
             train.warmup_steps: {{int_uniform: [3, 7]}}\n    model.moe.bpr: {{choice: [true, false]}}\n    \
             train.weight_decay: {{uniform: [0.0, 0.5]}}"
        )
    };
    let a = expand(&sweep(&text(7)));
    let b = expand(&sweep(&text(7)));
    let c = expand(&sweep(&text(8)));
    assert_eq!(a.len(), 50);
    assert_eq!(a, b, "the same seed gives the same trials");
    assert_ne!(
        a.iter()
            .map(|t| value_at(t, "train.lr"))
            .collect::<Vec<_>>(),
        c.iter()
            .map(|t| value_at(t, "train.lr"))
            .collect::<Vec<_>>(),
        "another seed gives other samples"
    );
    assert!(a[0].id.starts_with("r0,lr="), "{}", a[0].id);
    let mut decades = HashSet::new();
    let mut ints = HashSet::new();
    let mut bools = HashSet::new();
    for t in &a {
        let Value::Float(lr) = value_at(t, "train.lr") else {
            panic!()
        };
        assert!((1e-5..1e-1).contains(&lr), "{lr}");
        decades.insert(lr.log10().floor() as i64);
        let Value::Int(w) = value_at(t, "train.warmup_steps") else {
            panic!()
        };
        assert!((3..=7).contains(&w), "{w}");
        ints.insert(w);
        let Value::Float(wd) = value_at(t, "train.weight_decay") else {
            panic!()
        };
        assert!((0.0..0.5).contains(&wd), "{wd}");
        let Value::Bool(bpr) = value_at(t, "model.moe.bpr") else {
            panic!()
        };
        bools.insert(bpr);
    }
    assert!(
        decades.len() >= 3,
        "log-uniform spreads over decades: {decades:?}"
    );
    assert_eq!(ints.len(), 5, "both ends of an int range are drawn");
    assert_eq!(bools.len(), 2);
}

#[test]
fn ids_are_stable_unique_and_safe() {
    let s = sweep(
        "grid:\n  model.moe.every: [2]\n  train.every: [1]\n  data.root: [a/b, a_b, ' x ']\n  \
         train.schedule: [{cosine: 1}]\nseeds: [0]",
    );
    let trials = expand(&s);
    let got = ids(&trials);
    assert_eq!(got, ids(&expand(&s)), "the same section gives the same ids");
    assert_eq!(
        got,
        [
            "model.moe.every=2,train.every=1,root=a_b,schedule=cosine_1,seed=0",
            "model.moe.every=2,train.every=1,root=a_b,schedule=cosine_1,seed=0_2",
            "model.moe.every=2,train.every=1,root=_x_,schedule=cosine_1,seed=0",
        ]
    );
    assert_eq!(got.iter().collect::<HashSet<_>>().len(), got.len());
    let long = sweep(&format!("grid: {{data.root: ['{}']}}", "x".repeat(300)));
    let id = &expand(&long)[0].id;
    assert!(id.len() <= 120, "{id}");
    for id in got.iter().chain([id]) {
        assert!(
            !id.contains('/') && !id.contains(' ') && !id.starts_with('.'),
            "{id}"
        );
    }
}

fn registry() -> Registry {
    let mut registry = Registry::new();
    registry.register(CommandStage);
    registry
}

/// A spec of one command stage plus `extra`.
fn write_spec(dir: &Path, extra: &str) -> std::path::PathBuf {
    let file = dir.join("exp.yaml");
    std::fs::write(
        &file,
        format!(
            "name: exp\nmodel: {{moe: {{experts: 4, top_k: 1}}}}\nstages:\n  - {{id: hi, uses: command, with: {{argv: [true]}}}}\n{extra}"
        ),
    )
    .unwrap();
    file
}

#[test]
fn trials_load_as_specs_of_their_own_and_errors_name_the_trial() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_spec(
        dir.path(),
        "sweep:\n  grid:\n    model.moe.top_k: [1, 9]\n  seeds: [0, 1]\n",
    );
    let err = load_sweep(&file, &[], &registry()).unwrap_err().to_string();
    for seed in [0, 1] {
        assert!(
            err.contains(&format!(
                "error: trial top_k=9,seed={seed}: {}:7:26: model.moe.top_k: top_k 9 must be between 1 and experts (4)",
                file.display()
            )),
            "{err}"
        );
    }
    assert!(!err.contains("trial top_k=1"), "{err}");
    assert!(
        err.ends_with("2 errors in 2 of 4 trials; nothing was run"),
        "{err}"
    );

    let ok = load_sweep(
        &file,
        &["sweep.grid={model.moe.top_k: [1, 2]}".into()],
        &registry(),
    )
    .unwrap();
    assert_eq!(ok.trials.len(), 4);
    let t = &ok.trials[3];
    assert_eq!(t.trial.id, "top_k=2,seed=1");
    assert_eq!(t.loaded.spec.name, "exp");
    assert_eq!(t.loaded.spec.seed, 1);
    assert_eq!(t.loaded.spec.model.moe.top_k, 2);
    assert!(t.loaded.spec.sweep.is_empty());

    let one = load_trial(
        &file,
        &["sweep.grid={model.moe.top_k: [1, 2]}".into()],
        "top_k=2,seed=0",
        &registry(),
    )
    .unwrap();
    assert_eq!(one.loaded.spec.model.moe.top_k, 2);
    let unknown = load_trial(&file, &[], "top_k=2,seed=0", &registry())
        .unwrap_err()
        .to_string();
    assert!(unknown.contains("no trial `top_k=2,seed=0`"), "{unknown}");
    assert!(
        unknown.contains("did you mean `top_k=1,seed=0`?")
            || unknown.contains("did you mean `top_k=9,seed=0`?"),
        "{unknown}"
    );
}

#[test]
fn a_spec_without_a_sweep_is_not_a_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_spec(dir.path(), "");
    let err = load_sweep(&file, &[], &registry()).unwrap_err();
    assert!(matches!(err, SweepError::NotASweep(_)), "{err}");
    assert!(err.to_string().contains("has no `sweep` section"), "{err}");
}

#[test]
fn bad_case_names_and_targets_are_spec_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_spec(
        dir.path(),
        "sweep:\n  cases:\n    set/ting: {a: {}}\n    x: {'b c': {name: y}}\n",
    );
    let err = load_sweep(&file, &[], &registry()).unwrap_err().to_string();
    assert!(err.contains("axis `set/ting` must be letters"), "{err}");
    assert!(err.contains("case `b c` must be letters"), "{err}");
    assert!(err.contains("`name` cannot be swept"), "{err}");
}
