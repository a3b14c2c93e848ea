//! Spec loading: round trips, every error class with its position and hint, overrides.

use std::path::{Path, PathBuf};

use limoe_core::command::CommandStage;
use limoe_core::kinds::{ANALYZE, BENCHMARKS, EVAL, INGEST, TRAIN};
use limoe_core::spec::{Arch, Limit, Precision, Scope, Size, Source, SpecErrors, Synthetic};
use limoe_core::{LoadedSpec, Registry, Stage, StageContext, load_spec};

/// A stage kind of the default pipeline, which these tests load but never run.
struct Placeholder(&'static str, &'static [&'static str]);

impl Stage for Placeholder {
    fn kind(&self) -> &'static str {
        self.0
    }

    fn about(&self) -> &'static str {
        "a placeholder"
    }

    fn needs_kinds(&self, _spec: &limoe_core::Spec) -> Vec<&'static str> {
        self.1.to_vec()
    }

    fn run(&self, _: &StageContext) -> anyhow::Result<()> {
        anyhow::bail!("placeholders never run")
    }
}

fn registry() -> Registry {
    let mut registry = Registry::new();
    registry.register(CommandStage);
    registry.register(Placeholder(INGEST, &[]));
    registry.register(Placeholder(BENCHMARKS, &[]));
    registry.register(Placeholder(TRAIN, &[INGEST]));
    registry.register(Placeholder(EVAL, &[TRAIN, INGEST]));
    registry.register(Placeholder(ANALYZE, &[TRAIN]));
    registry
}

fn experiments() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments")
}

fn write_spec(dir: &tempfile::TempDir, text: &str) -> PathBuf {
    let path = dir.path().join("spec.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

fn load_text(text: &str, sets: &[&str]) -> Result<LoadedSpec, SpecErrors> {
    let dir = tempfile::tempdir().unwrap();
    let path = write_spec(&dir, text);
    let sets: Vec<String> = sets.iter().map(|s| (*s).to_owned()).collect();
    load_spec(&path, &sets, &registry())
}

/// The first line of every error of `text`, with the temp directory stripped.
fn error_lines(text: &str, sets: &[&str]) -> Vec<String> {
    let errors = load_text(text, sets).expect_err("the spec should be rejected");
    let prefix = format!("{}:", errors.file.display());
    errors
        .to_string()
        .lines()
        .filter(|l| l.starts_with("error: ") || l.starts_with("  hint: "))
        .map(|l| l.replace(&prefix, "spec.yaml:"))
        .collect()
}

#[test]
fn shipped_experiments_load() {
    for name in ["tiny", "b16", "l16"] {
        let loaded = load_spec(
            &experiments().join(format!("{name}.yaml")),
            &[],
            &registry(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(loaded.spec.name, name);
    }
    let l16 = load_spec(&experiments().join("l16.yaml"), &[], &registry()).unwrap();
    let m = &l16.spec.model;
    assert_eq!((m.width, m.depth, m.mlp_dim, m.heads), (1024, 24, 4096, 16));
    assert_eq!((m.patch, m.image_size, m.text_length), (16, 224, 16));
    assert_eq!(m.moe.experts, 32);
    assert_eq!(m.moe.moe_blocks(m.depth).len(), 12);
}

#[test]
fn resolved_spec_round_trips() {
    let loaded = load_spec(&experiments().join("tiny.yaml"), &[], &registry()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("tiny.yaml");
    std::fs::write(&saved, loaded.spec.to_yaml()).unwrap();
    let again = load_spec(&saved, &[], &registry()).unwrap_or_else(|e| panic!("{e}"));
    let mut expected = loaded.spec.clone();
    // The saved spec spells out the default pipeline's stages.
    expected.stages = again.spec.stages.clone();
    assert_eq!(again.spec, expected);
}

#[test]
fn short_spec_gets_defaults_and_presets() {
    let loaded = load_text(
        "model: {size: B}\ndata: {sources: [mnist, {synthetic: {pairs: 8}}]}\n",
        &[],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let spec = &loaded.spec;
    assert_eq!(spec.name, "spec", "the name defaults to the file stem");
    assert_eq!(spec.model.arch, Arch::Limoe);
    assert_eq!(spec.model.size, Size::B);
    assert_eq!((spec.model.width, spec.model.depth), (768, 12));
    assert_eq!(spec.model.moe.experts, 8);
    assert_eq!(spec.train.batch_size, 64);
    assert_eq!(
        spec.data.sources,
        [
            Source::Mnist(Limit::default()),
            Source::Synthetic(Synthetic {
                pairs: 8,
                ..Synthetic::default()
            })
        ],
        "a bare source name takes its defaults"
    );
    let ids: Vec<&str> = loaded.spec.stages.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        ids,
        ["ingest", "train", "eval", "analyze"],
        "the default pipeline"
    );
}

#[test]
fn unknown_key_names_position_path_and_hint() {
    assert_eq!(
        error_lines("name: x\nmodel:\n  moe:\n    expert: 8\n", &[]),
        [
            "error: spec.yaml:4:5: model.moe.expert: unknown key `expert`",
            "  hint: did you mean `experts`?",
        ]
    );
}

#[test]
fn wrong_type_names_what_was_expected() {
    assert_eq!(
        error_lines("name: x\ntrain:\n  steps: lots\n", &[]),
        [
            "error: spec.yaml:3:10: train.steps: expected a whole number (0 or more), found string \"lots\""
        ]
    );
}

#[test]
fn impossible_values_are_reported() {
    assert_eq!(
        error_lines(
            "name: x\nmodel:\n  patch: 7\n  moe: {experts: 4, top_k: 5}\n",
            &[]
        ),
        [
            "error: spec.yaml:3:3: model.patch: patch 7 does not divide image_size 32",
            "  hint: choose a patch size that divides the image side",
            "error: spec.yaml:4:21: model.moe.top_k: top_k 5 must be between 1 and experts (4)",
            "  hint: lower top_k or raise experts to at least 5",
        ]
    );
}

#[test]
fn pipeline_errors_unknown_kind_dangling_need_and_cycle() {
    let text = "\
name: x
stages:
  - {id: a, uses: comand}
  - {id: b, uses: command, needs: [c], with: {argv: [echo]}}
  - {id: c, uses: command, needs: [b], with: {argv: [echo]}}
  - {id: d, uses: command, needs: [bb], with: {argv: [echo]}}
";
    assert_eq!(
        error_lines(text, &[]),
        [
            "error: spec.yaml:3:13: stages[0].uses: unknown stage kind `comand`",
            "  hint: did you mean `command`?",
            "error: spec.yaml:4:28: stages[1].needs: stages depend on each other in a cycle: b -> c -> b",
            "  hint: remove one of these `needs`",
            "error: spec.yaml:6:36: stages[3].needs[0]: `bb` is not a stage of this spec",
            "  hint: did you mean `b`?",
        ]
    );
}

#[test]
fn a_stage_must_need_one_stage_of_each_kind_it_reads() {
    let text = "\
name: x
stages:
  - {id: data, uses: ingest}
  - {id: other, uses: ingest}
  - {id: fit, uses: train}
  - {id: score, uses: eval, needs: [fit, data, other]}
";
    assert_eq!(
        error_lines(text, &[]),
        [
            "error: spec.yaml:5:5: stages[2].needs: stage `fit` reads the output of a stage of \
             kind `ingest`, but its `needs` has none",
            "  hint: add `data` or `other` to `needs`",
            "error: spec.yaml:6:29: stages[3].needs: stage `score` needs 2 `ingest` stages (data, \
             other); it reads one",
            "  hint: keep one of them in `needs`",
        ]
    );
}

#[test]
fn all_errors_are_reported_at_once() {
    let text = "\
name: x
bogus: 1
model:
  heads: 5
  pooling: {image: mapp}
train: {steps: 0}
";
    let lines = error_lines(text, &[]);
    let errors: Vec<&String> = lines.iter().filter(|l| l.starts_with("error")).collect();
    assert_eq!(errors.len(), 4, "{lines:#?}");
    assert!(errors[0].starts_with("error: spec.yaml:2:1: bogus: unknown key"));
    assert!(errors[1].contains("model.heads: 5 heads do not divide width 64"));
    assert!(errors[2].contains("model.pooling.image: unknown value `mapp`"));
    assert!(errors[3].contains("train.steps: `steps` must be at least 1"));
}

#[test]
fn precision_is_f32_or_bf16_and_f32_keeps_old_cache_keys() {
    let default = load_text("name: x\n", &[]).unwrap().spec.train;
    assert_eq!(default.precision, Precision::F32);
    // Cache keys hash the serialised spec: at f32 it must serialise as before the key existed.
    let serialised = serde_json::to_value(&default).unwrap();
    assert!(serialised.get("precision").is_none(), "{serialised}");
    let mixed = load_text("name: x\n", &["train.precision=bf16"])
        .unwrap()
        .spec
        .train;
    assert_eq!(mixed.precision, Precision::Bf16);
    assert_eq!(serde_json::to_value(&mixed).unwrap()["precision"], "bf16");
    let lines = error_lines("name: x\ntrain: {precision: fp16}\n", &[]);
    assert!(
        lines[0].starts_with("error: spec.yaml:2:")
            && lines[0].contains("train.precision: unknown value `fp16`"),
        "{lines:#?}"
    );
}

#[test]
fn overrides_apply_and_are_validated() {
    let loaded = load_text(
        "name: x\nmodel: {moe: {experts: 4}}\n",
        &[
            "model.moe.experts=16",
            "train.steps=200",
            "model.pooling.text=map",
        ],
    )
    .unwrap();
    assert_eq!(loaded.spec.model.moe.experts, 16);
    assert_eq!(loaded.spec.train.steps, 200);
    assert_eq!(
        error_lines(
            "name: x\n",
            &[
                "model.moe.expert=16",
                "train.steps=many",
                "model.moe.top_k=9"
            ]
        ),
        [
            "error: spec.yaml: --set model.moe.expert=16: model.moe.expert: unknown key `expert`",
            "  hint: did you mean `experts`?",
            "error: spec.yaml: --set train.steps=many: train.steps: expected a whole number (0 or more), found string \"many\"",
            "error: spec.yaml: --set model.moe.top_k=9: model.moe.top_k: top_k 9 must be between 1 and experts (4)",
            "  hint: lower top_k or raise experts to at least 9",
        ]
    );
}

#[test]
fn syntax_errors_and_unreadable_files() {
    assert_eq!(
        error_lines("name: x\nmodel: [1\n", &[]),
        ["error: spec.yaml:2:8: (top level): invalid YAML: unclosed bracket '['"]
    );
    let missing = load_spec(Path::new("/nonexistent/spec.yaml"), &[], &registry()).unwrap_err();
    assert!(
        missing.to_string().contains("cannot read the spec"),
        "{missing}"
    );
}

/// Values that once passed validation and then aborted, exhausted memory, panicked or
/// stopped the pipeline half-way: each is now one error naming its key, with its limit.
#[test]
fn values_that_cannot_run_are_refused_naming_key_and_limit() {
    let cases: &[(&str, [&str; 2])] = &[
        (
            "name: x\ndata:\n  sources:\n    - synthetic: {image_size: 1000000}\n",
            [
                "error: spec.yaml:4:19: data.sources[0].synthetic.image_size: an image side of \
                 1000000 pixels is over the limit of 4096: every image is held as side x side x \
                 3 values",
                "  hint: use at most 4096 pixels (the LIMoE models see 224)",
            ],
        ),
        (
            "name: x\nmodel: {image_size: 8192, patch: 16}\n",
            [
                "error: spec.yaml:2:9: model.image_size: an image side of 8192 pixels is over \
                 the limit of 4096: every image is held as side x side x 3 values",
                "  hint: use at most 4096 pixels (the LIMoE models see 224)",
            ],
        ),
        (
            "name: x\nanalysis:\n  plot_size: [100000, 100000]\n",
            [
                "error: spec.yaml:3:3: analysis.plot_size: a plot of 100000x100000 pixels is \
                 over the limit of 8192 pixels a side",
                "  hint: use at most 8192x8192 (the default is 800x500)",
            ],
        ),
        (
            "name: x\ndata:\n  shuffle_buffer: 1000000000000\n",
            [
                "error: spec.yaml:3:3: data.shuffle_buffer: 1000000000000 pairs is over the \
                 limit of 65536: the loader holds a shuffle buffer and a row group of pairs in \
                 memory",
                "  hint: set `shuffle_buffer` to at most 65536",
            ],
        ),
        (
            "name: x\ndata: {row_group_rows: 100000}\n",
            [
                "error: spec.yaml:2:8: data.row_group_rows: 100000 pairs is over the limit of \
                 65536: the loader holds a shuffle buffer and a row group of pairs in memory",
                "  hint: set `row_group_rows` to at most 65536",
            ],
        ),
        (
            "name: x\ndata: {shard_mib: 100000}\n",
            [
                "error: spec.yaml:2:8: data.shard_mib: 100000 MiB is over the limit of 65536 \
                 MiB per shard",
                "  hint: set `shard_mib` to at most 65536 (the default is 256)",
            ],
        ),
        (
            "name: x\nmodel:\n  vocab_size: 10\n",
            [
                "error: spec.yaml:3:3: model.vocab_size: a vocabulary of 10 ids does not fit \
                 the tokenizer: CLIP's BPE needs at least 514 (512 byte tokens, start and end) \
                 and has 49408",
                "  hint: set vocab_size between 514 and 49408 (the `tiny` preset has 4096)",
            ],
        ),
        (
            "name: x\nmodel: {channels: 1}\n",
            [
                "error: spec.yaml:2:9: model.channels: `channels: 1`, but images are decoded as \
                 RGB (3 channels)",
                "  hint: set `channels: 3` or leave it out",
            ],
        ),
        (
            "name: x\nmodel: {depth: 100000000}\n",
            [
                "error: spec.yaml:2:9: model.depth: depth 100000000 is over the limit of 1024 \
                 blocks",
                "  hint: use at most 1024 blocks",
            ],
        ),
        (
            "name: x\nmodel: {size: L}\ntrain: {batch_size: 32768}\n",
            [
                "error: spec.yaml:3:9: train.batch_size: a micro-batch (batch_size / \
                 accumulation) of 32768 pairs holds 4933025792 input values (150528 pixel \
                 values and 16 token ids a pair), over the limit of 4294967296",
                "  hint: raise train.accumulation (micro-batches per step) or lower \
                 train.batch_size: at most 28529 pairs of this model fit the limit",
            ],
        ),
        (
            "name: x\neval: {batch_size: 1000000000000}\n",
            [
                "error: spec.yaml:2:8: eval.batch_size: a batch of 1000000000000 pairs is over \
                 the limit of 1048576 pairs",
                "  hint: lower eval.batch_size: at most 1048576 pairs fit a batch",
            ],
        ),
        (
            "name: x\nmodel: {text_length: 5000000000}\n",
            [
                "error: spec.yaml:2:9: model.text_length: 5000000000 token ids a caption are \
                 over the limit of 4294967296 input values for a whole batch",
                "  hint: lower text_length (the LIMoE models use 16)",
            ],
        ),
        (
            "name: x\ntrain: {monitor: {retrieval: {max_pairs: 100000}}}\n",
            [
                "error: spec.yaml:2:31: train.monitor.retrieval.max_pairs: 100000 pairs is \
                 over the limit of 16384: retrieval scores every image against every text",
                "  hint: set `max_pairs` to at most 16384",
            ],
        ),
        (
            "name: x\ntrain:\n  best: {metric: nosuch}\n  monitor: {retrieval: {enabled: false}}\n",
            [
                "error: spec.yaml:3:10: train.best.metric: `nosuch` is not a metric this run \
                 records: it records `loss` and what `train.monitor` evaluates (its zero-shot \
                 datasets, and retrieval)",
                "  hint: this run records: loss, synthetic/zero_shot_top1, \
                 synthetic/zero_shot_top5, \
                 synthetic/mean_per_class_recall, synthetic/chance_top1",
            ],
        ),
        (
            "name: x\ntrain: {best: {metric: synthetic/zero_shot_top}}\n",
            [
                "error: spec.yaml:2:16: train.best.metric: `synthetic/zero_shot_top` is not a \
                 metric this run records: it records `loss` and what `train.monitor` evaluates \
                 (its zero-shot datasets, and retrieval)",
                "  hint: did you mean `synthetic/zero_shot_top5`?",
            ],
        ),
        (
            "name: x\nstages:\n  - id: c\n    uses: command\n    with:\n      argv: [echo]\n      \
             env: {\"A\\0B\": x}\n",
            [
                "error: spec.yaml:7:13: stages[0].with.env: environment variable name \"A\\0B\" \
                 has a NUL byte",
                "  hint: remove the `\\0`",
            ],
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(error_lines(text, &[]), expected, "{text}");
    }
    // The paper's L/16 batch in one micro-batch is valid, if too large for most machines.
    load_text(
        "name: x\nmodel: {size: L}\ntrain: {batch_size: 16384}\n",
        &[],
    )
    .unwrap_or_else(|e| panic!("{e}"));
}

/// The benchmark form outside checks use, verbatim.
const BENCHMARKS_FORM: &str = "name: x
eval:
  benchmarks:
    digits:
      source: {parquet: {path: some/dir, columns: {key: key, image: image, caption: caption, label: label, label_name: label_name}}}
      classnames: [zero, one, two, three, four, five, six, seven, eight, nine]
      templates: [\"a photo of the number {}.\"]
    fmnist:
      source: {fashion_mnist: {limit: 2000}}
  zero_shot:
    datasets: [digits, fmnist]
";

#[test]
fn benchmarks_are_evaluated_by_their_own_stage_and_named_in_dataset_lists() {
    let loaded = load_text(BENCHMARKS_FORM, &[]).unwrap();
    let benchmarks = &loaded.spec.eval.benchmarks;
    assert_eq!(benchmarks.keys().collect::<Vec<_>>(), ["digits", "fmnist"]);
    let classnames = benchmarks["digits"].class_names("digits").unwrap().unwrap();
    assert_eq!(classnames.len(), 10);
    let ids: Vec<(&str, &[String])> = (loaded.spec.stages.iter())
        .map(|s| (s.id.as_str(), s.needs.as_slice()))
        .collect();
    assert_eq!(ids[1], ("benchmarks", &[][..]));
    assert_eq!(ids[3].0, "eval");
    assert!(ids[3].1.contains(&"benchmarks".to_owned()), "{ids:?}");

    let lines = error_lines(BENCHMARKS_FORM, &["eval.zero_shot.datasets=[digit, mnist]"]);
    assert!(
        lines[0].contains("eval.zero_shot.datasets[0]"),
        "{lines:#?}"
    );
    assert!(lines[1].contains("did you mean `digits`?"), "{lines:#?}");
    assert!(
        lines[2].contains("`mnist` is neither a benchmark nor"),
        "{lines:#?}"
    );
    let lines = error_lines(
        BENCHMARKS_FORM,
        &["train.monitor.zero_shot.datasets=[digits]"],
    );
    assert!(lines[0].contains("the periodic evaluation"), "{lines:#?}");
    let lines = error_lines(
        BENCHMARKS_FORM,
        &[
            "data.sources=[fashion_mnist]",
            "eval.benchmarks.fashion_mnist={source: mnist}",
        ],
    );
    assert!(
        lines[0].contains("has the name of a source of the training data"),
        "{lines:#?}"
    );
    let lines = error_lines(
        BENCHMARKS_FORM,
        &["eval.benchmarks.digits.templates=['the number']"],
    );
    assert!(
        lines[0].contains("eval.benchmarks.digits.templates[0]"),
        "{lines:#?}"
    );
    let lines = error_lines(BENCHMARKS_FORM, &["eval.benchmarks.digits.classnames=[]"]);
    assert!(lines[0].contains("`classnames` is empty"), "{lines:#?}");
}

#[test]
fn synthetic_held_out_classes_must_be_classes_and_leave_some() {
    let lines = error_lines(
        "name: x\ndata: {sources: [{synthetic: {hold_out: [pink circle, green triangle]}}]}\n",
        &[],
    );
    assert!(
        lines[0].contains("data.sources[0].synthetic.hold_out[0]"),
        "{lines:#?}"
    );
    assert!(
        lines[0].contains("`pink circle` is not a synthetic class"),
        "{lines:#?}"
    );
    assert!(lines[1].contains("red, green"), "{lines:#?}");
    let lines = error_lines(
        "name: x\ndata: {sources: [{synthetic: {hold_out: [red circle], classes: [red circle]}}]}\n",
        &[],
    );
    assert!(
        lines[0].contains("both held out and a class to draw"),
        "{lines:#?}"
    );
}

#[test]
fn best_metric_is_any_metric_the_periodic_evaluation_records() {
    let text = "name: x\ndata: {sources: [synthetic, mnist]}\n\
                train:\n  monitor: {zero_shot: {datasets: [mnist]}}\n";
    for metric in [
        "loss",
        "mnist/zero_shot_top5",
        "all/retrieval_t2i_median_rank",
    ] {
        let set = format!("train.best.metric={metric}");
        load_text(text, &[&set]).unwrap_or_else(|e| panic!("{metric}: {e}"));
    }
    let lines = error_lines(
        text,
        &[
            "train.best.metric=all/retrieval_i2t_r1",
            "train.monitor.retrieval.enabled=false",
        ],
    );
    assert!(
        lines[0].contains("`all/retrieval_i2t_r1` is not a metric this run records"),
        "{lines:#?}"
    );
}

#[test]
fn executor_settings_are_checked_naming_their_keys() {
    let text = "\
name: x
executor:
  local: {ranks: 0}
  slurm:
    nodes: 0
    gpus: 1
    gpus_per_node: 2
    mpi: 'pm ix'
";
    assert_eq!(
        error_lines(text, &[]),
        [
            "error: spec.yaml:3:11: executor.local.ranks: `ranks` must be at least 1",
            "error: spec.yaml:5:5: executor.slurm.nodes: `nodes` must be at least 1",
            "error: spec.yaml:6:5: executor.slurm.gpus: both `gpus` (1) and `gpus_per_node` (2) \
             are given; they are one setting",
            "  hint: keep `gpus_per_node` and remove `gpus`",
            "error: spec.yaml:8:5: executor.slurm.mpi: mpi `pm ix` is not an `srun --mpi` \
             plugin name",
            "  hint: write the name `srun --mpi=list` shows, e.g. pmix (Open MPI) or pmi2 (MPICH)",
        ]
    );
    assert_eq!(
        error_lines("name: x\nexecutor: {slurm: {ntasks: 2}}\n", &[]),
        [
            "error: spec.yaml:2:20: executor.slurm.ntasks: unknown key `ntasks`",
            "  hint: did you mean `ntasks_per_node`?",
        ]
    );
}

/// Executor keys left at their defaults are not written out, so the resolved spec (and its
/// hash, the name of the saved spec) of a spec that does not give them stays as it was.
#[test]
fn executor_defaults_keep_the_resolved_spec_as_it_was() {
    let resolved = |text: &str| load_text(text, &[]).unwrap().spec.to_yaml();
    assert!(!resolved("name: x\n").contains("executor"));
    let slurm = resolved("name: x\nexecutor: {slurm: {cpus: 8}}\n");
    assert!(
        slurm.contains(
            "executor:\n  slurm:\n    partition: null\n    gpus: 0\n    cpus: 8\n    \
             time: 04:00:00\n    mem: 16G\nstages:"
        ),
        "{slurm}"
    );
    let set = "name: x\nexecutor:\n  local: {ranks: 2}\n  slurm: {nodes: 2, ntasks_per_node: 4, \
               gpus_per_node: 4, mpi: pmi2}\n";
    let loaded = load_text(set, &[]).unwrap();
    let yaml = loaded.spec.to_yaml();
    for line in [
        "nodes: 2",
        "ntasks_per_node: 4",
        "gpus_per_node: 4",
        "mpi: pmi2",
        "ranks: 2",
    ] {
        assert!(yaml.contains(line), "{line} in {yaml}");
    }
    assert_eq!(loaded.spec.executor.slurm.ranks(), 8);
    assert_eq!(loaded.spec.executor.slurm.node_gpus(), 4);
    let dir = tempfile::tempdir().unwrap();
    let again = load_spec(&write_spec(&dir, &yaml), &[], &registry()).unwrap();
    assert_eq!(again.spec.executor, loaded.spec.executor);
}

#[test]
fn command_arguments_and_environment_must_fit_a_process() {
    let text = "\
name: x
stages:
  - id: c
    uses: command
    with:
      argv: [echo, \"a\\0b\"]
      env: {\"\": x, \"C=D\": y, E: \"v\\0\"}
";
    assert_eq!(
        error_lines(text, &[]),
        [
            "error: spec.yaml:6:20: stages[0].with.argv[1]: argument \"a\\0b\" has a NUL byte, \
             which no program can be given",
            "  hint: remove the `\\0`",
            "error: spec.yaml:7:13: stages[0].with.env: an environment variable needs a name",
            "  hint: name it, e.g. `THRESHOLD: \"0.5\"`",
            "error: spec.yaml:7:20: stages[0].with.env: environment variable name \"C=D\" has a \
             `=`, which ends a name",
            "  hint: rename it without `=`",
            "error: spec.yaml:7:30: stages[0].with.env: the value of environment variable `E` \
             has a NUL byte",
            "  hint: remove the `\\0`",
        ]
    );
}

#[test]
fn only_small_regular_files_are_read_as_specs() {
    let dir = tempfile::tempdir().unwrap();
    let large = dir.path().join("large.yaml");
    std::fs::write(&large, format!("name: x\n#{}\n", "-".repeat(1 << 20))).unwrap();
    let cases = [
        (Path::new("/dev/zero"), "it is not a regular file"),
        (dir.path(), "it is a directory"),
        (
            large.as_path(),
            "it is over the limit of 1048576 bytes (1 MiB) for a spec",
        ),
    ];
    for (path, expected) in cases {
        let errors = load_spec(path, &[], &registry()).unwrap_err().to_string();
        assert!(
            errors.contains(&format!("cannot read the spec: {expected}")),
            "{errors}"
        );
        assert!(errors.contains("hint: "), "{errors}");
    }
}

/// `model.aux.scope` takes `joint` or `per_modality` per balancing loss, is left out of the
/// written spec at its default (so keys written before it hold), and a misspelt scope is
/// an error at its line.
#[test]
fn balancing_scope_is_read_and_written_only_when_set() {
    let joint = load_text("model:\n  aux:\n    scope: {load: joint}\n", &[]).unwrap();
    assert_eq!(joint.spec.model.aux.scope.load, Scope::Joint);
    assert_eq!(joint.spec.model.aux.scope.importance, Scope::PerModality);
    let yaml = serde_json::to_string(&joint.spec).unwrap();
    assert!(
        yaml.contains(r#""scope":{"importance":"per_modality","load":"joint"}"#),
        "{yaml}"
    );
    let default = serde_json::to_string(&load_text("", &[]).unwrap().spec).unwrap();
    assert!(!default.contains("scope"), "{default}");
    let errors = error_lines("model:\n  aux:\n    scope: {importance: jont}\n", &[]);
    assert!(errors[0].starts_with("error: spec.yaml:3:"), "{errors:?}");
    assert!(
        errors.join("\n").contains("model.aux.scope.importance"),
        "{errors:?}"
    );
}

#[test]
fn a_classifier_needs_its_head_and_its_resolved_spec_loads_again() {
    let classifier = "data:\n  sources: [fashion_mnist]\nmodel:\n  arch: vmoe\n  classifier: \
                      {classes: 10, loss: sigmoid}\n";
    let loaded = load_text(classifier, &[]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.spec.model.classifier.map(|c| c.classes), Some(10));
    // The resolved spec writes out the zero-shot lists' default (`synthetic`), which a
    // classifier never reads: it must load all the same.
    let again = load_text(&loaded.spec.to_yaml(), &[]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again.spec.model, loaded.spec.model);
    let missing = error_lines("model:\n  arch: vit\n", &[]).join("\n");
    assert!(
        missing.contains("model.classifier") && missing.contains("classes: N"),
        "{missing}"
    );
    let stray = error_lines("model:\n  classifier: {classes: 3}\n", &[]).join("\n");
    assert!(stray.contains("only the classifiers"), "{stray}");
    // A contrastive spec's zero-shot lists are still checked.
    let unknown = error_lines(
        "data:\n  sources: [fashion_mnist]\neval:\n  zero_shot:\n    datasets: [synthetic]\n",
        &[],
    );
    assert!(
        unknown.join("\n").contains("eval.zero_shot.datasets[0]"),
        "{unknown:?}"
    );
}
