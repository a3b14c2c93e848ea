//! The `limoe` binary end to end.

mod support;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};

use support::{finished_output, limoe, root, text};

#[test]
fn validate_accepts_every_shipped_experiment() {
    let mut specs: Vec<String> = std::fs::read_dir(root().join("experiments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| p.display().to_string())
        .collect();
    specs.sort();
    assert!(specs.len() >= 2, "tiny.yaml and l16.yaml at least");
    let mut args = vec!["validate"];
    args.extend(specs.iter().map(String::as_str));
    let out = limoe(&args, &root());
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(text(&out.stdout).matches("ok: ").count(), specs.len());
}

#[test]
fn broken_spec_exits_nonzero_with_the_message() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("broken.yaml");
    std::fs::write(
        &spec,
        "name: broken\nmodel:\n  moe: {experts: 4, top_k: 8}\n",
    )
    .unwrap();
    let out = limoe(&["validate", spec.to_str().unwrap()], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains(
            "broken.yaml:3:21: model.moe.top_k: top_k 8 must be between 1 and experts (4)"
        ),
        "{err}"
    );
    let run = limoe(&["run", spec.to_str().unwrap()], dir.path());
    assert_eq!(run.status.code(), Some(2));
    assert!(
        !dir.path().join("runs").exists(),
        "nothing runs on an invalid spec"
    );
}

#[test]
fn run_dry_run_plan_and_cached_rerun() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("cmd.yaml");
    std::fs::write(
        &spec,
        "name: cmd\nstages:\n  - id: hello\n    uses: command\n    with:\n      argv: [sh, -c, 'echo hi > \"$LIMOE_OUTPUT_DIR/hi.txt\"']\n",
    )
    .unwrap();
    let spec = spec.to_str().unwrap();

    let dry = limoe(&["run", spec, "--dry-run"], dir.path());
    assert!(dry.status.success(), "{}", text(&dry.stderr));
    assert!(
        text(&dry.stdout).contains("will run"),
        "{}",
        text(&dry.stdout)
    );
    assert!(
        !dir.path().join("runs").exists(),
        "--dry-run writes nothing"
    );

    let first = limoe(&["run", spec], dir.path());
    assert!(first.status.success(), "{}", text(&first.stderr));
    let log = text(&first.stderr);
    assert!(log.contains("hello: running `command`"), "{log}");
    assert!(
        !log.contains('\x1b'),
        "colour codes in a log that is no terminal: {log:?}"
    );
    assert!(
        text(&first.stdout).contains("hello        done"),
        "{}",
        text(&first.stdout)
    );

    let plan = limoe(&["plan", spec], dir.path());
    assert!(
        text(&plan.stdout).contains("cached"),
        "{}",
        text(&plan.stdout)
    );

    let again = limoe(&["run", spec, "-q"], dir.path());
    assert!(
        text(&again.stdout).contains("hello        cached"),
        "{}",
        text(&again.stdout)
    );

    let forced = limoe(&["run", spec, "--force", "hello"], dir.path());
    assert!(
        text(&forced.stdout).contains("hello        done"),
        "{}",
        text(&forced.stdout)
    );

    // `limoe verify` re-hashes what the manifests list and names a changed file.
    let verified = limoe(&["verify", "runs/cmd"], dir.path());
    assert!(verified.status.success(), "{}", text(&verified.stderr));
    assert!(
        text(&verified.stdout).starts_with("ok "),
        "{}",
        text(&verified.stdout)
    );
    let output = std::fs::read_dir(dir.path().join("runs/cmd"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("hello-")
        })
        .unwrap();
    std::fs::write(output.join("hi.txt"), "ho\n").unwrap();
    let changed = limoe(&["verify", "cmd"], dir.path());
    assert_eq!(changed.status.code(), Some(1));
    let stdout = text(&changed.stdout);
    assert!(
        stdout.starts_with("CHANGED ") && stdout.contains("hi.txt: 3 bytes with SHA-256"),
        "{stdout}"
    );
    assert!(text(&changed.stderr).contains("--force STAGE"));

    let custom = limoe(&["--runs-dir", "elsewhere", "run", spec], dir.path());
    assert!(custom.status.success());
    assert!(dir.path().join("elsewhere/cmd/specs").is_dir());
}

#[test]
fn default_experiment_trains_and_evaluates_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = root().join("experiments/tiny.yaml");
    let run_args = |train: &str| {
        let train = format!(
            "train={{steps: {train}, batch_size: 8, warmup_steps: 1, eval_every: 2, \
             checkpoint_every: 2}}"
        );
        [
            "run",
            tiny.to_str().unwrap(),
            "--set",
            "data.sources=[{synthetic: {pairs: 96}}]",
            "--set",
            &train,
            "--set",
            "eval.batch_size=16",
            "--set",
            "eval.few_shot.shots=[1]",
        ]
        .map(str::to_owned)
    };
    let out = limoe(&run_args("4").each_ref().map(String::as_str), dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for stage in ["ingest", "benchmarks", "train", "eval", "analyze"] {
        assert!(stdout.contains(&format!("{stage:<12} done")), "{stdout}");
    }
    let report = dir.path().join("reports/tiny");
    assert!(stdout.contains("reports/tiny/index.html"), "{stdout}");
    check_report(&report, 7);
    let summary = std::fs::read_to_string(report.join("summary.json")).unwrap();
    assert!(summary.contains("\"text_specialists\""), "{summary}");
    let page = std::fs::read_to_string(report.join("index.html")).unwrap();
    let classes = &page[page
        .find("Top classes per expert")
        .expect("a top-classes table")..];
    assert!(
        ["circle", "square", "triangle", "cross"]
            .iter()
            .any(|shape| classes.contains(shape)),
        "classes are named: {classes}"
    );

    // `limoe report` redraws it from the logs; an unknown run is a clear error.
    std::fs::remove_dir_all(&report).unwrap();
    let out = limoe(&["report", "runs/tiny"], dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    check_report(&report, 7);
    // A later run of the same name that is killed leaves the finished run's report alone:
    // it is drawn with the spec that run ran, not the killed one's.
    let mut killed = Command::new(env!("CARGO_BIN_EXE_limoe"))
        .args(run_args("500"))
        .arg("-q")
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let training = || {
        std::fs::read_dir(dir.path().join("runs/tiny")).is_ok_and(|mut entries| {
            entries.any(|e| e.unwrap().path().to_string_lossy().ends_with(".partial"))
        })
    };
    while !training() {
        assert!(
            killed.try_wait().unwrap().is_none(),
            "the second run ended early"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    killed.kill().unwrap();
    killed.wait().unwrap();
    let out = limoe(&["report", "runs/tiny"], dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let page = std::fs::read_to_string(report.join("index.html")).unwrap();
    assert!(
        page.contains("steps: 4") && !page.contains("steps: 500"),
        "the report shows the spec of the run it draws"
    );
    let out = limoe(&["report", "nothing"], dir.path());
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("runs/nothing"),
        "{}",
        text(&out.stderr)
    );
    let run = dir.path().join("runs/tiny");
    let find = |prefix: &str| finished_output(&run, prefix);
    let train = find("train-");
    assert!(train.join("checkpoints/step-00000004/state.json").is_file());
    let counters = std::fs::read_to_string(train.join("loader.json")).unwrap();
    assert!(counters.contains("\"undecodable\": 0"), "{counters}");
    assert!(!counters.contains("\"yielded\": 0"), "{counters}");
    for log in ["metrics", "routing", "eval"] {
        assert!(train.join(log).is_dir(), "train has no {log} log");
    }
    let eval = find("eval-");
    let summary = std::fs::read_to_string(eval.join("summary.json")).unwrap();
    for metric in ["zero_shot_top1", "zero_shot_top5", "mean_per_class_recall"] {
        for dataset in ["synthetic", "unseen"] {
            assert!(
                summary.contains(&format!("{dataset}/{metric}")),
                "{summary}"
            );
        }
    }
    assert!(
        summary.contains("\"unseen/chance_top1\": 0.25"),
        "{summary}"
    );
    assert!(summary.contains("all/retrieval_i2t_r1"), "{summary}");
    let unseen =
        eval.join("clip_benchmark/unseen_tiny-step4_limoe-tiny_en_zeroshot_classification.json");
    let unseen: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&unseen).unwrap()).unwrap();
    assert_eq!(unseen["task"], "zeroshot_classification");
    assert!(unseen["metrics"]["acc1"].is_f64(), "{unseen}");
}

/// The report in `dir` shows `plots` pictures, every one it refers to is a valid PNG or SVG,
/// and headless Chromium (when installed) renders the page without anything overflowing it.
fn check_report(dir: &Path, plots: usize) {
    let html = std::fs::read_to_string(dir.join("index.html")).unwrap();
    assert_eq!(html.matches("<img src=").count(), plots, "{html}");
    let files = limoe_analysis::report::verify_pictures(dir).unwrap();
    assert!(files >= plots, "{files} picture files for {plots} plots");
    assert!(dir.join("summary.md").is_file());
    support::chromium::check_page(&dir.join("index.html"));
}

#[test]
fn stages_lists_the_command_kind_and_every_subcommand_has_help() {
    let out = limoe(&["stages"], &root());
    let kinds: Vec<String> = text(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect();
    assert_eq!(
        kinds,
        [
            "analyze",
            "benchmarks",
            "command",
            "eval",
            "finetune",
            "ingest",
            "train"
        ]
    );
    for sub in [
        "run",
        "validate",
        "plan",
        "stages",
        "report",
        "sweep",
        "verify",
        "tensorboard",
        "runs",
        "compare",
    ] {
        let help = limoe(&[sub, "--help"], &root());
        assert!(help.status.success());
        assert!(text(&help.stdout).contains("Usage: limoe"), "{sub}");
    }
}

#[test]
fn a_model_that_cannot_fit_stops_before_any_stage_runs() {
    let dir = tempfile::tempdir().unwrap();
    let l16 = root().join("experiments/l16.yaml");
    // A single micro-batch of 16384 pairs of L/16: terabytes of activations.
    let out = limoe(
        &[
            "run",
            l16.to_str().unwrap(),
            "--set",
            "train.accumulation=1",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("stage `train` cannot run"), "{stderr}");
    assert!(stderr.contains("does NOT fit"), "{stderr}");
    assert!(stderr.contains("near the paper"), "{stderr}");
    assert!(
        !dir.path()
            .join("runs/l16")
            .read_dir()
            .is_ok_and(|mut d| d.any(|e| e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("ingest"))),
        "ingest ran although training cannot"
    );
}

#[test]
fn plan_on_many_ranks_gives_memory_per_device_and_communication() {
    let l16 = root().join("experiments/l16.yaml");
    let l16 = l16.to_str().unwrap();
    let plan = |args: &[&str]| {
        let mut all = vec!["plan", l16];
        all.extend(args);
        limoe(&all, &root())
    };
    let out = plan(&["--world", "64", "--expert-parallel", "32"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    for line in [
        "placement: 64 ranks, 16 of each micro-batch's 1024 pairs per rank, 1 of the 32 experts",
        "training memory per device (f32): ",
        "GB per device (GB = 1e9 bytes): fits an 80 GB GPU, fits a 141 GB GPU",
        "communication per step, bytes each rank sends: ",
        "  all-reduce of dense gradients over 64 ranks: ",
        "  all-reduce of expert gradients over the 2 rank(s) holding the same experts: ",
        "  all-to-all of MoE dispatch buffers in groups of 32 rank(s): ",
        "  all-gather of the embeddings the contrastive loss contrasts: ",
    ] {
        assert!(stdout.contains(line), "no `{line}` in\n{stdout}");
    }
    // One process holds all 32 experts and the whole micro-batch: no 80 GB GPU fits it.
    let solo = text(&plan(&[]).stdout);
    assert!(solo.contains("does NOT fit an 80 GB GPU"), "{solo}");
    // Mixed precision: a bf16 copy of the weights is counted, and activations are halved.
    let mixed = plan(&[
        "--set",
        "train.precision=bf16",
        "--world",
        "64",
        "--expert-parallel",
        "32",
    ]);
    let mixed = text(&mixed.stdout);
    for line in ["training memory per device (bf16): ", ", their bf16 copy "] {
        assert!(mixed.contains(line), "no `{line}` in\n{mixed}");
    }

    let dense = [
        "--set",
        "model.arch=dense",
        "--world",
        "2",
        "--expert-parallel",
        "2",
    ];
    for (args, message) in [
        (
            &["--world", "64", "--expert-parallel", "3"][..],
            "--expert-parallel 3 does not divide the 32 experts",
        ),
        (
            &["--world", "6", "--expert-parallel", "4"],
            "--expert-parallel 4 does not divide --world 6",
        ),
        (
            &["--world", "3"],
            "--world 3 ranks do not split the micro-batch",
        ),
        (
            &dense,
            "--expert-parallel 2 shards experts, and a Dense model has none",
        ),
    ] {
        let out = plan(args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// The cache key of each stage of `limoe plan experiments/tiny.yaml` with `sets`.
fn tiny_keys(sets: &[&str]) -> std::collections::BTreeMap<String, String> {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let mut args = vec![
        "plan",
        "experiments/tiny.yaml",
        "--runs-dir",
        runs.to_str().unwrap(),
    ];
    for set in sets {
        args.extend(["--set", set]);
    }
    let out = limoe(&args, &root());
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // `  <id> <kind> <needs> <key> <status>`: keys are 16 hex digits.
            let key = fields.get(3)?;
            (key.len() == 16 && key.chars().all(|c| c.is_ascii_hexdigit()))
                .then(|| (fields[0].to_owned(), (*key).to_owned()))
        })
        .collect()
}

#[test]
fn each_stage_key_covers_exactly_what_it_reads() {
    let base = tiny_keys(&[]);
    assert_eq!(
        base.keys().map(String::as_str).collect::<Vec<_>>(),
        ["analyze", "benchmarks", "eval", "ingest", "train"]
    );
    let changed = |sets: &[&str]| -> Vec<String> {
        let keys = tiny_keys(sets);
        base.iter()
            .filter(|(id, key)| keys[*id] != **key)
            .map(|(id, _)| id.clone())
            .collect()
    };
    for set in [
        "eval.few_shot.shots=[1]",
        "eval.zero_shot.datasets=[]",
        "eval.zero_shot.templates=['a {}']",
        "eval.retrieval.max_pairs=10",
        "eval.batch_size=7",
        "eval.assignments=false",
    ] {
        // analyze reads the eval output, so its key follows eval's.
        assert_eq!(changed(&[set]), ["analyze", "eval"], "--set {set}");
    }
    for set in [
        "eval.benchmarks.unseen.source.synthetic.pairs=100",
        "eval.benchmarks.unseen.templates=['a {} shape']",
    ] {
        assert_eq!(
            changed(&[set]),
            ["analyze", "benchmarks", "eval"],
            "a benchmark is imported and scored, never trained on: --set {set}"
        );
    }
    assert_eq!(changed(&["analysis.plot_size=[300, 200]"]), ["analyze"]);
    assert_eq!(
        changed(&["data.shuffle_buffer=8"]),
        ["analyze", "eval", "train"],
        "the shuffle buffer is the loader's, not ingest's"
    );
    assert_eq!(
        changed(&["train.precision=bf16"]),
        ["analyze", "eval", "train"],
        "bf16 trains other weights"
    );
    assert!(
        changed(&["train.precision=f32"]).is_empty(),
        "the default precision keeps the keys of specs written before it"
    );
    assert_eq!(
        changed(&["train.monitor.pairs=100"]),
        ["analyze", "eval", "train"],
        "the periodic evaluation is part of training"
    );
    assert_eq!(
        changed(&["data.splits.test=0.1"]),
        ["analyze", "eval", "ingest", "train"]
    );
    let tiny_seed = "0";
    assert!(
        changed(&[&format!("data.seed={tiny_seed}")]).is_empty(),
        "data.seed equal to seed draws the same data and keeps every key"
    );
    assert_eq!(
        changed(&["seed=1"]),
        ["analyze", "benchmarks", "eval", "ingest", "train"],
        "without data.seed, seed draws the data too"
    );
    assert_eq!(
        changed(&[&format!("data.seed={tiny_seed}"), "seed=1"]),
        ["analyze", "eval", "train"],
        "with data.seed set, a model seed reuses the shards and benchmarks"
    );
}

/// Runs limoe with stdout (or stderr) a pipe whose reader is already gone, as after
/// `limoe ... | head -1`; returns the exit status and whatever it wrote to the other stream.
fn limoe_into_closed_pipe(args: &[&str], close_stderr: bool) -> (ExitStatus, String) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut command = Command::new(env!("CARGO_BIN_EXE_limoe"));
    command.args(args).current_dir(root());
    if close_stderr {
        command.stderr(writer).stdout(Stdio::piped());
    } else {
        command.stdout(writer).stderr(Stdio::piped());
    }
    let out = command.output().expect("limoe runs");
    let other = if close_stderr {
        &out.stdout
    } else {
        &out.stderr
    };
    (out.status, text(other))
}

#[test]
fn a_closed_pipe_ends_limoe_quietly() {
    let bad = tempfile::tempdir().unwrap();
    let bad_spec = bad.path().join("bad.yaml");
    std::fs::write(&bad_spec, "name: x\nmodel: {vocab_size: 10}\n").unwrap();
    let cases: [(&[&str], bool); 5] = [
        (&["stages"], false),
        (&["validate", "experiments/tiny.yaml"], false),
        (&["plan", "experiments/tiny.yaml"], false),
        (&["run", "experiments/tiny.yaml", "--dry-run"], false),
        (&["validate", bad_spec.to_str().unwrap()], true),
    ];
    for (args, close_stderr) in cases {
        let (status, other) = limoe_into_closed_pipe(args, close_stderr);
        let quiet = matches!(status.code(), Some(0 | 141)) || status.signal() == Some(13);
        assert!(quiet, "{args:?}: {status}\n{other}");
        assert!(!other.contains("panicked"), "{args:?}: {other}");
    }
}

/// The first release build, which `just run` would otherwise do silently under `cargo run
/// -q`, says what it is doing and how long it takes, and shows cargo's progress (a fake
/// `cargo` on PATH records how it was called); once the binary exists, it is not repeated.
#[test]
fn the_quick_start_says_it_is_compiling_on_a_cold_build() {
    if Command::new("just").arg("--version").output().is_err() {
        eprintln!("skipped: `just` is not installed (./scripts/bootstrap.sh installs it)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let calls = dir.path().join("calls.txt");
    let fake = bin.join("cargo");
    std::fs::write(
        &fake,
        format!("#!/bin/sh\necho \"$@\" >> {}\n", calls.display()),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let target = dir.path().join("target");
    let just = |target: &Path| {
        Command::new("just")
            .args([
                "--justfile",
                root().join("justfile").to_str().unwrap(),
                "release",
            ])
            .env(
                "PATH",
                format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
            )
            .env("CARGO_TARGET_DIR", target)
            .output()
            .unwrap()
    };
    let cold = just(&target);
    assert!(cold.status.success(), "{}", text(&cold.stderr));
    let said = text(&cold.stderr);
    assert!(
        said.contains("compiling limoe in release mode for the first time: about"),
        "{said}"
    );
    assert_eq!(
        std::fs::read_to_string(&calls).unwrap(),
        "build --release -p limoe-cli\n"
    );

    std::fs::create_dir_all(target.join("release")).unwrap();
    std::fs::copy(&fake, target.join("release/limoe")).unwrap();
    let warm = just(&target);
    assert!(
        warm.status.success() && !text(&warm.stderr).contains("compiling"),
        "{}",
        text(&warm.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(&calls).unwrap().lines().count(),
        1,
        "built again"
    );
}
