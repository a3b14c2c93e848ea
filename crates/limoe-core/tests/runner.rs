//! The runner: order, caching, failure and recovery, --force, and the `command` stage.

use std::path::{Path, PathBuf};

use limoe_core::command::CommandStage;
use limoe_core::files::sha256_hex;
use limoe_core::runner::{MANIFEST, Manifest, Outcome, RunReport, Runner, SPECS_DIR, Status};
use limoe_core::{Progress, Registry, load_spec};

struct Project {
    dir: tempfile::TempDir,
    registry: Registry,
}

impl Project {
    fn new() -> Project {
        let mut registry = Registry::new();
        registry.register(CommandStage);
        Project {
            dir: tempfile::tempdir().unwrap(),
            registry,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn spec(&self, stages: &str) -> PathBuf {
        let path = self.path("exp.yaml");
        std::fs::write(&path, format!("name: exp\nstages:\n{stages}")).unwrap();
        path
    }

    fn run(&self, spec: &Path, force: &[&str]) -> RunReport {
        let loaded = load_spec(spec, &[], &self.registry).unwrap_or_else(|e| panic!("{e}"));
        let runner = Runner::new(&self.registry, self.path("runs"), Progress::new(false));
        let force: Vec<String> = force.iter().map(|s| (*s).to_owned()).collect();
        let plan = runner.plan(&loaded, &force).unwrap();
        runner.execute(&loaded, &plan).unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path("log.txt")).unwrap_or_default()
    }
}

/// A command stage that appends its id to log.txt and writes out.txt.
fn logging_stage(project: &Project, id: &str, needs: &[&str]) -> String {
    let log = project.path("log.txt");
    format!(
        "  - id: {id}\n    uses: command\n    needs: [{}]\n    with:\n      argv: [sh, -c, 'echo {id} >> {} && echo {id} output > \"$LIMOE_OUTPUT_DIR/out.txt\"']\n",
        needs.join(", "),
        log.display()
    )
}

fn outcomes(report: &RunReport) -> Vec<(&str, &Outcome)> {
    report
        .stages
        .iter()
        .map(|(id, _, o)| (id.as_str(), o))
        .collect()
}

fn ran(report: &RunReport) -> Vec<&str> {
    outcomes(report)
        .into_iter()
        .filter(|(_, o)| matches!(o, Outcome::Ran { .. }))
        .map(|(id, _)| id)
        .collect()
}

#[test]
fn order_follows_needs_and_second_run_is_cached() {
    let p = Project::new();
    let spec = p.spec(
        &[
            logging_stage(&p, "report", &["train", "prep"]),
            logging_stage(&p, "train", &["prep"]),
            logging_stage(&p, "prep", &[]),
        ]
        .concat(),
    );
    let first = p.run(&spec, &[]);
    assert_eq!(ran(&first), ["prep", "train", "report"]);
    assert_eq!(p.log(), "prep\ntrain\nreport\n");

    let second = p.run(&spec, &[]);
    assert!(ran(&second).is_empty(), "{:?}", outcomes(&second));
    assert!(second.stages.iter().all(|(_, _, o)| *o == Outcome::Cached));
    assert_eq!(p.log(), "prep\ntrain\nreport\n", "nothing ran again");
    let record = RunReport::read(&p.path("runs/exp")).unwrap();
    assert!(
        record
            .spec_file
            .starts_with(p.path("runs/exp").join(SPECS_DIR))
    );
    assert!(
        std::fs::read_to_string(&record.spec_file)
            .unwrap()
            .contains("name: exp")
    );
}

/// Two specs of one name at once: a stage reads the spec of its own run, and each run's
/// record names the spec it ran, though the other run of the name wrote its own meanwhile.
#[test]
fn concurrent_runs_of_one_name_each_keep_their_own_spec() {
    let p = Project::new();
    let go = p.path("go");
    let copy_spec = "cp \"$LIMOE_SPEC\" \"$LIMOE_OUTPUT_DIR/seen.yaml\"";
    let write = |file: &str, seed: u64, script: &str| {
        let path = p.path(file);
        let stage = format!(
            "  - id: look\n    uses: command\n    with:\n      argv: [sh, -c, '{script}']\n"
        );
        std::fs::write(&path, format!("name: exp\nseed: {seed}\nstages:\n{stage}")).unwrap();
        path
    };
    let waiting = write(
        "a.yaml",
        1,
        &format!(
            "while [ ! -e {} ]; do sleep 0.02; done; {copy_spec}",
            go.display()
        ),
    );
    let quick = write("b.yaml", 2, copy_spec);
    let seen =
        |report: &RunReport| std::fs::read_to_string(report.stages[0].1.join("seen.yaml")).unwrap();
    std::thread::scope(|scope| {
        let first = scope.spawn(|| p.run(&waiting, &[]));
        let started = || {
            std::fs::read_dir(p.path("runs/exp")).is_ok_and(|mut entries| {
                entries.any(|e| {
                    e.unwrap()
                        .path()
                        .extension()
                        .is_some_and(|x| x == "partial")
                })
            })
        };
        while !started() {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let second = p.run(&quick, &[]);
        assert!(seen(&second).contains("seed: 2"));
        std::fs::write(&go, "").unwrap();
        let first = first.join().unwrap();
        assert!(seen(&first).contains("seed: 1"), "{}", seen(&first));
        let record = RunReport::read(&p.path("runs/exp")).unwrap();
        assert_eq!(record.spec_file, first.spec_file);
        assert!(
            std::fs::read_to_string(&record.spec_file)
                .unwrap()
                .contains("seed: 1")
        );
        assert_ne!(first.spec_file, second.spec_file);
        assert!(second.spec_file.is_file());
    });
}

#[test]
fn command_outputs_are_hashed_into_the_manifest_and_inputs_passed() {
    let p = Project::new();
    let spec = p.spec(&format!(
        "{}  - id: use\n    uses: command\n    needs: [make]\n    with:\n      argv: [sh, -c, 'cat \"$LIMOE_INPUT_MAKE/out.txt\" > \"$LIMOE_OUTPUT_DIR/copy.txt\"; echo \"$LIMOE_EXPERIMENT $LIMOE_STAGE\" > \"$LIMOE_OUTPUT_DIR/who.txt\"']\n",
        logging_stage(&p, "make", &[])
    ));
    let report = p.run(&spec, &[]);
    assert!(report.succeeded(), "{:?}", outcomes(&report));
    let (_, dir, _) = &report.stages[1];
    assert_eq!(
        std::fs::read_to_string(dir.join("copy.txt")).unwrap(),
        "make output\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("who.txt")).unwrap(),
        "exp use\n"
    );
    let key = dir.file_name().unwrap().to_string_lossy()["use-".len()..].to_owned();
    let manifest = Manifest::read_complete(dir, &key).expect("complete manifest");
    let copy = manifest
        .files
        .iter()
        .find(|f| f.path == Path::new("copy.txt"))
        .expect("copy.txt listed");
    assert_eq!(copy.bytes, 12);
    assert_eq!(copy.sha256, sha256_hex(b"make output\n"));
    assert_eq!(manifest.inputs.len(), 1);
    assert_eq!(manifest.inputs[0].id, "make");
    assert!(
        manifest
            .files
            .iter()
            .any(|f| f.path == Path::new("command.log"))
    );
}

#[test]
fn failed_stage_leaves_no_complete_manifest_and_reruns() {
    let p = Project::new();
    let marker = p.path("fixed");
    let spec = p.spec(&format!(
        "{}  - id: flaky\n    uses: command\n    needs: [prep]\n    with:\n      argv: [sh, -c, 'echo trying; test -e {} && touch \"$LIMOE_OUTPUT_DIR/ok\"']\n",
        logging_stage(&p, "prep", &[]),
        marker.display()
    ));
    let first = p.run(&spec, &[]);
    assert!(!first.succeeded());
    let Outcome::Failed { error } = first.stages[1].2.clone() else {
        panic!("flaky should fail: {:?}", outcomes(&first))
    };
    assert!(error.contains("exited with exit status: 1"), "{error}");
    assert!(
        error.contains("trying"),
        "the error shows the program's output: {error}"
    );
    let final_dir = &first.stages[1].1;
    assert!(!final_dir.exists(), "no output dir that looks complete");
    let partial = final_dir.with_extension("partial");
    assert!(partial.join("failure.json").is_file());
    assert!(!partial.join(MANIFEST).exists());

    std::fs::write(&marker, "").unwrap();
    let second = p.run(&spec, &[]);
    assert!(second.succeeded(), "{:?}", outcomes(&second));
    assert_eq!(ran(&second), ["flaky"], "prep stays cached, flaky reruns");
    assert!(final_dir.join("ok").is_file());
    assert!(!partial.exists());
}

#[test]
fn force_reruns_a_cached_stage() {
    let p = Project::new();
    let spec = p.spec(
        &[
            logging_stage(&p, "a", &[]),
            logging_stage(&p, "b.v2", &["a"]),
        ]
        .concat(),
    );
    p.run(&spec, &[]);
    let loaded = load_spec(&spec, &[], &p.registry).unwrap();
    let runner = Runner::new(&p.registry, p.path("runs"), Progress::new(false));
    let plan = runner.plan(&loaded, &["a".to_owned()]).unwrap();
    assert_eq!(plan.stages[0].status, Status::Forced);
    assert_eq!(plan.stages[1].status, Status::Cached);
    let forced = p.run(&spec, &["a"]);
    assert_eq!(ran(&forced), ["a"]);
    let again = p.run(&spec, &["b.v2"]);
    assert_eq!(ran(&again), ["b.v2"]);
    assert_eq!(p.log(), "a\nb.v2\na\nb.v2\n");
    let entries: Vec<String> = std::fs::read_dir(p.path("runs/exp"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with('.') && !name.ends_with(".json") && name != SPECS_DIR)
        .collect();
    assert_eq!(
        entries.len(),
        2,
        "one output per stage, no leftovers: {entries:?}"
    );
    let err = runner.plan(&loaded, &["c".to_owned()]).unwrap_err();
    assert!(
        err.to_string().contains("--force c: no such stage"),
        "{err}"
    );
}

#[test]
fn changing_config_or_a_dependency_changes_the_key() {
    let p = Project::new();
    let script = p.path("tool.sh");
    std::fs::write(&script, "echo v1\n").unwrap();
    let stage = |arg: &str| {
        format!(
            "  - id: s\n    uses: command\n    with:\n      argv: [sh, {}, {arg}]\n      deps: [{}]\n",
            script.display(),
            script.display()
        )
    };
    let spec = p.spec(&stage("x"));
    let first = p.run(&spec, &[]);
    assert_eq!(ran(&first), ["s"]);
    assert_eq!(ran(&p.run(&spec, &[])), Vec::<&str>::new());
    std::fs::write(&script, "echo v2\n").unwrap();
    let after_edit = p.run(&spec, &[]);
    assert_eq!(
        ran(&after_edit),
        ["s"],
        "editing a dependency reruns the stage"
    );
    assert_ne!(first.stages[0].1, after_edit.stages[0].1);
    let spec = p.spec(&stage("y"));
    assert_eq!(
        ran(&p.run(&spec, &[])),
        ["s"],
        "changing argv reruns the stage"
    );
}

/// A stage that reads the whole `train` section and writes nothing.
struct ReadsTrain;

impl limoe_core::Stage for ReadsTrain {
    fn kind(&self) -> &'static str {
        "reads-train"
    }
    fn about(&self) -> &'static str {
        "test stage"
    }
    fn reads(&self) -> &'static [&'static str] {
        &["train"]
    }
    fn run(&self, _ctx: &limoe_core::StageContext) -> anyhow::Result<()> {
        Ok(())
    }
}

#[test]
fn how_experts_are_placed_is_no_part_of_the_key() {
    let mut p = Project::new();
    p.registry.register(ReadsTrain);
    let spec = |train: &str| {
        let path = p.path("exp.yaml");
        std::fs::write(
            &path,
            format!("name: exp\ntrain: {{{train}}}\nstages:\n  - id: t\n    uses: reads-train\n"),
        )
        .unwrap();
        path
    };
    let first = p.run(&spec("steps: 50"), &[]);
    assert_eq!(ran(&first), ["t"]);
    let placed = p.run(&spec("steps: 50, expert_parallel: 2"), &[]);
    assert!(ran(&placed).is_empty(), "expert_parallel changed the key");
    assert_eq!(first.stages[0].1, placed.stages[0].1);
    let other = p.run(&spec("steps: 60, expert_parallel: 2"), &[]);
    assert_eq!(ran(&other), ["t"], "the rest of train is still part of it");
}

#[test]
fn a_damaged_output_is_not_taken_as_cached() {
    let p = Project::new();
    let spec = p.spec(&logging_stage(&p, "a", &[]));
    let first = p.run(&spec, &[]);
    std::fs::write(first.stages[0].1.join("out.txt"), "cut").unwrap();
    assert_eq!(ran(&p.run(&spec, &[])), ["a"]);
}

/// A Rust stage that records what it found in its output directory, then fails, panics or
/// succeeds as told by a file next to the runs directory.
struct Probe {
    resumable: bool,
}

impl limoe_core::Stage for Probe {
    fn kind(&self) -> &'static str {
        "probe"
    }
    fn about(&self) -> &'static str {
        "test stage"
    }
    fn resumable(&self) -> bool {
        self.resumable
    }
    fn run(&self, ctx: &limoe_core::StageContext) -> anyhow::Result<()> {
        let leftover = ctx.out_dir.join("step.txt").exists();
        std::fs::write(ctx.out_dir.join("step.txt"), format!("leftover={leftover}"))?;
        let mode_file = ctx
            .out_dir
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .join("mode");
        match std::fs::read_to_string(mode_file)
            .unwrap_or_default()
            .trim()
        {
            "fail" => anyhow::bail!("told to fail"),
            "panic" => panic!("told to panic"),
            _ => Ok(()),
        }
    }
}

fn probe_project(resumable: bool) -> (Project, PathBuf) {
    let mut p = Project::new();
    p.registry.register(Probe { resumable });
    let spec = p.spec("  - {id: p, uses: probe}\n");
    (p, spec)
}

#[test]
fn interrupted_output_is_cleared_unless_the_stage_resumes() {
    for resumable in [false, true] {
        let (p, spec) = probe_project(resumable);
        std::fs::write(p.path("mode"), "fail").unwrap();
        assert!(!p.run(&spec, &[]).succeeded());
        std::fs::write(p.path("mode"), "ok").unwrap();
        let report = p.run(&spec, &[]);
        assert!(report.succeeded());
        let step = std::fs::read_to_string(report.stages[0].1.join("step.txt")).unwrap();
        assert_eq!(step, format!("leftover={resumable}"));
    }
}

#[test]
fn a_panicking_stage_fails_cleanly() {
    let (p, spec) = probe_project(false);
    std::fs::write(p.path("mode"), "panic").unwrap();
    let report = p.run(&spec, &[]);
    let Outcome::Failed { error } = &report.stages[0].2 else {
        panic!("expected a failure")
    };
    assert!(
        error.contains("the stage panicked: told to panic"),
        "{error}"
    );
    assert!(!report.stages[0].1.exists());
}

#[test]
fn a_stage_with_settings_it_does_not_take_is_rejected() {
    let (p, _) = probe_project(false);
    let spec = p.spec("  - {id: p, uses: probe, with: {x: 1}}\n");
    let errors = load_spec(&spec, &[], &p.registry).unwrap_err().to_string();
    assert!(
        errors.contains("stages[0].with: stage kind `probe` takes no settings"),
        "{errors}"
    );
}
