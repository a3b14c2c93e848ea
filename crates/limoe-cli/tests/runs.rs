//! `limoe runs` and `limoe compare` on two tiny runs.

mod support;

use std::path::Path;

use support::sweeps::{SHORT_TRAIN, tiny_sweep};
use support::{limoe, text};

/// Runs the tiny pipeline (no sweep) as experiment `name` in `dir`.
fn tiny_run(dir: &Path, name: &str) {
    let spec = dir.join(format!("{name}.yaml"));
    std::fs::write(&spec, tiny_sweep(name, SHORT_TRAIN, "")).unwrap();
    let out = limoe(&["run", spec.to_str().unwrap(), "-q"], dir);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn runs_lists_experiments_and_compare_puts_their_metrics_side_by_side() {
    let dir = tempfile::tempdir().unwrap();
    let out = limoe(&["runs"], dir.path());
    assert!(!out.status.success(), "no runs directory yet");
    assert!(
        text(&out.stderr).contains("limoe run SPEC"),
        "{}",
        text(&out.stderr)
    );
    for name in ["alpha", "beta"] {
        tiny_run(dir.path(), name);
    }
    std::fs::create_dir_all(dir.path().join("runs/not-a-run")).unwrap();

    let out = limoe(&["runs"], dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listing = text(&out.stdout);
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(
        lines.len(),
        3,
        "a header and a line per experiment:\n{listing}"
    );
    assert!(lines[0].contains("zero-shot top-1") && lines[0].contains("image→text R@1"));
    for (line, name) in lines[1..].iter().zip(["alpha", "beta"]) {
        assert!(line.starts_with(name), "{listing}");
        assert!(line.contains(" done "), "{listing}");
        assert!(line.contains("(synthetic)"), "the key score: {listing}");
        assert!(
            line.contains("ingest (") && line.contains("analyze ("),
            "{listing}"
        );
        assert!(line.contains("Z "), "a UTC time: {listing}");
    }

    let out = limoe(&["compare", "alpha", "runs/beta"], dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    let header = table.lines().next().unwrap();
    assert!(
        header.starts_with("synthetic") && header.contains("alpha") && header.contains("runs/beta"),
        "{table}"
    );
    for words in [
        "zero-shot top-1",
        "image→text R@1",
        "training steps",
        "routing",
    ] {
        assert!(table.contains(words), "{words}: {table}");
    }
    assert!(
        !table.contains("retrieval_i2t_r1"),
        "metric keys are written out: {table}"
    );
    let steps = table
        .lines()
        .find(|l| l.starts_with("training steps"))
        .unwrap();
    assert_eq!(
        steps.split_whitespace().filter(|w| *w == "3").count(),
        2,
        "{steps}"
    );

    let out = limoe(&["compare", "alpha", "beta", "--json"], dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["runs"], serde_json::json!(["alpha", "beta"]));
    let top1 = json["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rows"].as_array().unwrap())
        .find(|r| r["key"] == "synthetic/zero_shot_top1")
        .expect("zero-shot top-1 in the JSON");
    assert_eq!(top1["metric"], "zero-shot top-1");
    assert!(top1["values"][1].is_f64(), "{top1}");

    let out = limoe(&["compare", "alpha", "beta", "--markdown"], dir.path());
    assert!(text(&out.stdout).starts_with("| synthetic | alpha | beta |\n|---|---|---|\n"));

    let out = limoe(&["compare", "alpha", "nothing"], dir.path());
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("runs/nothing") && err.contains("limoe run SPEC"),
        "{err}"
    );
}
