//! Held-out benchmarks through the `limoe` binary: a labelled Parquet set the run writes
//! itself is imported by the `benchmarks` stage, classified zero-shot over its whole class
//! list (names from a CLIP_benchmark JSON file, or from its `label_name` column), probed
//! few-shot on its own pairs, and written in CLIP_benchmark's schema; and each bad input is
//! an error naming the benchmark and the key.

mod support;

use std::path::Path;
use std::process::Output;

use limoe_core::spec::Splits;
use limoe_data::shards::{DatasetWriter, ShardLayout};
use limoe_data::synthetic;
use support::{finished_output as find, limoe, root, text};

/// Writes `pairs` synthetic scenes as Parquet under `dir` (its `test-*.parquet` files hold
/// them all), with only the classes whose label is below `classes` (as GIFs, which every
/// importer skips, when `gif`); returns the glob of its files.
fn write_labelled_set(dir: &Path, pairs: usize, classes: i32, gif: bool) -> String {
    let layout = ShardLayout {
        row_group_rows: 64,
        max_bytes: 1 << 30,
    };
    let mut writer = DatasetWriter::new(dir, layout, Splits::ALL_TEST).unwrap();
    let scenes = (0..).map(|index| synthetic::generate(77, index, 32));
    for (index, mut pair) in scenes
        .filter(|p| p.label.unwrap() < classes)
        .take(pairs)
        .enumerate()
    {
        pair.key = format!("held-{index}");
        if gif {
            pair.image = b"GIF89a".to_vec();
        }
        writer.add(pair).unwrap();
    }
    writer.finish().unwrap();
    format!("{}/test-*.parquet", dir.display())
}

/// `limoe run` of the tiny experiment shrunk to seconds, with `sets` added.
fn run_args(sets: &[String]) -> Vec<String> {
    let tiny = root().join("experiments/tiny.yaml");
    let mut args: Vec<String> = [
        "run",
        tiny.to_str().unwrap(),
        "-q",
        "--set",
        "data.sources=[{synthetic: {pairs: 96}}]",
        "--set",
        "train={steps: 2, batch_size: 8, warmup_steps: 1, eval_every: 2, checkpoint_every: 2}",
        "--set",
        "eval.batch_size=16",
    ]
    .map(String::from)
    .to_vec();
    for set in sets {
        args.extend(["--set".to_owned(), set.clone()]);
    }
    args
}

fn parquet(glob: &str, label_name: bool) -> String {
    let names = if label_name {
        ", label_name: label_name"
    } else {
        ""
    };
    format!(
        "{{parquet: {{path: '{glob}', columns: {{key: key, image: image, caption: caption, \
         label: label{names}}}}}}}"
    )
}

#[test]
fn a_foreign_parquet_benchmark_is_classified_over_its_whole_class_list() {
    let dir = tempfile::tempdir().unwrap();
    // Labels 0..6 only, while the class list names 10 classes: chance is 1/10, not 1/6.
    let glob = write_labelled_set(&dir.path().join("set"), 60, 6, false);
    let names: Vec<String> = (0..10).map(|i| format!("shape {i}")).collect();
    let names_file = dir.path().join("names.json");
    std::fs::write(
        &names_file,
        serde_json::json!({ "digits": names }).to_string(),
    )
    .unwrap();
    let benchmarks = format!(
        "eval.benchmarks={{digits: {{source: {}, classnames: '{}', templates: ['a photo of the \
         number {{}}.']}}, named: {{source: {}}}}}",
        parquet(&glob, false),
        names_file.display(),
        parquet(&glob, true)
    );
    let args = run_args(&[
        benchmarks,
        "eval.zero_shot.datasets=[digits, named]".into(),
        "eval.few_shot={shots: [1, 2], datasets: [digits]}".into(),
    ]);
    let out = limoe(&args, dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));

    let eval = find(&dir.path().join("runs/tiny"), "eval-");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(eval.join("summary.json")).unwrap()).unwrap();
    for dataset in ["digits", "named"] {
        for metric in ["zero_shot_top1", "zero_shot_top5", "mean_per_class_recall"] {
            let value = summary[format!("{dataset}/{metric}")].as_f64();
            assert!(value.is_some_and(|v| (0.0..=1.0).contains(&v)), "{summary}");
        }
    }
    assert_eq!(summary["digits/chance_top1"], 0.1, "the whole class list");
    let named_chance = summary["named/chance_top1"].as_f64().unwrap();
    assert!(
        (named_chance - 1.0 / 6.0).abs() < 1e-12,
        "label_name's classes"
    );
    assert!(summary["digits/few_shot_1"].is_f64(), "{summary}");
    assert!(summary["digits/few_shot_2"].is_f64(), "{summary}");

    let results = eval.join("clip_benchmark");
    for dataset in ["digits", "named"] {
        let file = results.join(format!(
            "{dataset}_tiny-step2_limoe-tiny_en_zeroshot_classification.json"
        ));
        let result: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        assert_eq!(result["dataset"], dataset);
        assert_eq!(result["model"], "limoe-tiny");
        assert_eq!(result["pretrained"], "tiny-step2");
        assert_eq!(result["task"], "zeroshot_classification");
        assert_eq!(result["language"], "en");
        assert_eq!(
            result["metrics"]["acc1"],
            summary[format!("{dataset}/zero_shot_top1")]
        );
        assert!(result["metrics"]["mean_per_class_recall"].is_f64());
    }
    let retrieval = results.join("synthetic_tiny-step2_limoe-tiny_en_zeroshot_retrieval.json");
    let retrieval: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&retrieval).unwrap()).unwrap();
    assert!(retrieval["metrics"]["image_retrieval_recall@5"].is_f64());
    // Nothing of the benchmarks reached training: its shards hold only the synthetic pairs.
    let ingest = find(&dir.path().join("runs/tiny"), "ingest-");
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ingest.join("index.json")).unwrap()).unwrap();
    let sources: Vec<&String> = index["sources"].as_object().unwrap().keys().collect();
    assert_eq!(sources, ["synthetic"]);
}

/// The benchmark stage alone, with `benchmark` as `eval.benchmarks.bad`.
fn import_only(dir: &Path, benchmark: &str) -> Output {
    let args = run_args(&[
        format!("eval.benchmarks={{bad: {benchmark}}}"),
        "eval.zero_shot.datasets=[bad]".into(),
        "stages=[{id: benchmarks, uses: benchmarks}]".into(),
    ]);
    limoe(&args, dir)
}

fn fails_with(out: &Output, needles: &[&str]) {
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "should fail:\n{stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "no `{needle}` in:\n{stderr}");
    }
}

#[test]
fn every_bad_benchmark_input_names_the_benchmark_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let glob = write_labelled_set(&dir.path().join("set"), 12, 24, false);
    // A label without a name, and no classnames.
    let out = import_only(
        dir.path(),
        &format!("{{source: {}}}", parquet(&glob, false)),
    );
    fails_with(&out, &["eval.benchmarks.bad", "has no name", "classnames"]);
    // A missing column.
    let missing = format!("{{source: {{parquet: {{path: '{glob}', columns: {{label: digit}}}}}}}}");
    fails_with(
        &import_only(dir.path(), &missing),
        &["eval.benchmarks.bad", "digit"],
    );
    // A label outside the class list.
    let short = format!("{{source: {}, classnames: [a, b]}}", parquet(&glob, false));
    fails_with(
        &import_only(dir.path(), &short),
        &["eval.benchmarks.bad", "outside the 2"],
    );
    // A template file with an entry without `{}`, and a names file without the benchmark.
    let templates = dir.path().join("templates.json");
    std::fs::write(&templates, r#"["a photo of {}.", "a photo."]"#).unwrap();
    let bad_template = format!(
        "{{source: {}, templates: '{}'}}",
        parquet(&glob, true),
        templates.display()
    );
    fails_with(
        &import_only(dir.path(), &bad_template),
        &["eval.benchmarks.bad.templates[1]", "no `{}`"],
    );
    let names = dir.path().join("names.json");
    std::fs::write(&names, r#"{"cifar10": ["a", "b"]}"#).unwrap();
    let other = format!(
        "{{source: {}, classnames: '{}'}}",
        parquet(&glob, true),
        names.display()
    );
    fails_with(
        &import_only(dir.path(), &other),
        &[
            "eval.benchmarks.bad.classnames",
            "no entry `bad`",
            "cifar10",
        ],
    );
    // An empty set: every image is one the importer skips.
    let empty_glob = write_labelled_set(&dir.path().join("gifs"), 4, 24, true);
    fails_with(
        &import_only(
            dir.path(),
            &format!("{{source: {}}}", parquet(&empty_glob, true)),
        ),
        &["eval.benchmarks.bad", "no pairs"],
    );
    // Inline lists are checked with the spec, at their line.
    let inline = format!(
        "{{source: {}, templates: ['a photo.']}}",
        parquet(&glob, true)
    );
    fails_with(
        &import_only(dir.path(), &inline),
        &["eval.benchmarks.bad.templates[0]", "no `{}`"],
    );
    // An unknown dataset name, and a benchmark in the periodic evaluation.
    let good = format!("{{source: {}}}", parquet(&glob, true));
    let mut args = run_args(&[
        format!("eval.benchmarks={{digits: {good}}}"),
        "eval.zero_shot.datasets=[digit]".into(),
    ]);
    fails_with(
        &limoe(&args, dir.path()),
        &["eval.zero_shot.datasets[0]", "did you mean `digits`?"],
    );
    args.extend([
        "--set".into(),
        "train.monitor.zero_shot.datasets=[digits]".into(),
    ]);
    fails_with(
        &limoe(&args, dir.path()),
        &["train.monitor.zero_shot.datasets[0]", "is a benchmark"],
    );
}
