//! `limoe sweep` and `limoe run --trial` end to end, on tiny specs.

#[path = "support/sweeps.rs"]
mod sweeps;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use limoe_core::runner::RunReport;
use limoe_core::sweep::{SweepRecord, TrialState};
use sweeps::{LONG_TRAIN, SHORT_TRAIN, tiny_sweep};

fn limoe_with(args: &[&str], cwd: &Path, path_env: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_limoe"));
    command.args(args).current_dir(cwd);
    if let Some(path) = path_env {
        command.env("PATH", path);
    }
    command.output().expect("limoe runs")
}

fn limoe(args: &[&str], cwd: &Path) -> Output {
    limoe_with(args, cwd, None)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn both(out: &Output) -> String {
    format!("{}{}", text(&out.stdout), text(&out.stderr))
}

fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    path
}

/// An executable `#!/bin/sh` script `dir/name` running `body`.
fn write_script(dir: &Path, name: &str, body: &str) {
    let path = write(dir, name, &format!("#!/bin/sh\n{body}"));
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

/// Finished output directories of stage `id` under `experiment`.
fn outputs(experiment: &Path, id: &str) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(experiment)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            p.is_dir() && name.starts_with(&format!("{id}-")) && !name.ends_with(".partial")
        })
        .collect();
    dirs.sort();
    dirs
}

/// The learning rate of the tiny sweep, over two values.
const LR_GRID: &str = "sweep:\n  grid:\n    train.lr: [0.001, 0.0003]\n";

/// The tiny model on 96 synthetic pairs for 3 steps, its learning rate swept over two values.
fn tiny_lr_sweep() -> String {
    tiny_sweep("tinysweep", SHORT_TRAIN, LR_GRID)
}

#[test]
fn shared_ingest_runs_once_and_a_rerun_is_all_cached() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write(dir.path(), "tinysweep.yaml", &tiny_lr_sweep());
    let spec = spec.to_str().unwrap();
    let out = limoe(&["sweep", spec, "--jobs", "2", "-q"], dir.path());
    assert!(out.status.success(), "{}", both(&out));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("shared stages (run once for every trial): ingest"),
        "{stdout}"
    );
    let experiment = dir.path().join("runs/tinysweep");
    assert_eq!(outputs(&experiment, "ingest").len(), 1, "{stdout}");
    assert_eq!(outputs(&experiment, "train").len(), 2, "{stdout}");
    for id in ["lr=0.001", "lr=0.0003"] {
        let trial = experiment.join("trials").join(id);
        let log = std::fs::read_to_string(trial.join("log.txt")).unwrap();
        assert!(
            log.contains("ingest       cached"),
            "trial {id} ran ingest itself:\n{log}"
        );
        assert!(log.contains("train        done"), "{log}");
        let ran = RunReport::read(&trial).unwrap();
        assert!(ran.spec_file.starts_with(trial.join("specs")) && ran.spec_file.is_file());
        assert!(stdout.contains(&format!("trial {id}: done")), "{stdout}");
    }
    let record = SweepRecord::read(&experiment).unwrap();
    let ids: Vec<&str> = record.trials.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["lr=0.001", "lr=0.0003"]);
    for t in &record.trials {
        assert_eq!(t.state, TrialState::Done, "{t:?}");
        let metric = t.metric.as_ref().expect("a key metric");
        assert_eq!(metric.name, "synthetic/zero_shot_top1");
        assert!(t.summary().unwrap().contains_key("all/retrieval_i2t_r1"));
        assert_eq!(t.stages.len(), 4);
        assert_eq!(
            t.stage_dir("ingest"),
            Some(outputs(&experiment, "ingest")[0].as_path())
        );
    }
    assert_eq!(
        record.trials[1].overrides.0["train.lr"],
        serde_json::json!(0.0003)
    );

    // The comparison report lists and links every trial, whose own reports link back.
    let report = dir.path().join("reports/tinysweep");
    let index = std::fs::read_to_string(report.join("index.html")).unwrap();
    for id in ["lr=0.001", "lr=0.0003"] {
        assert!(
            index.contains(&format!("href=\"trials/{id}/index.html\"")),
            "{index}"
        );
        let trial =
            std::fs::read_to_string(report.join("trials").join(id).join("index.html")).unwrap();
        assert!(trial.contains("href=\"../../index.html\""), "{trial}");
    }
    assert!(report.join("plots/comparison.png").is_file());

    // `limoe tensorboard` names each trial's events by its id, at both the in-progress and
    // the final place of its train output; the final one holds them.
    let shown = limoe(&["tensorboard", "tinysweep"], dir.path());
    assert!(shown.status.success(), "{}", both(&shown));
    let line = text(&shown.stdout);
    let logdir_spec = (line.trim().strip_prefix("tensorboard --logdir_spec '"))
        .and_then(|rest| rest.strip_suffix('\''))
        .unwrap_or_else(|| panic!("not a --logdir_spec line: {line}"));
    let entries: Vec<(&str, PathBuf)> = (logdir_spec.split(','))
        .map(|entry| entry.split_once(':').expect("name:path"))
        .map(|(name, path)| (name, PathBuf::from(path)))
        .collect();
    for trial in &record.trials {
        let train = trial.stage_dir("train").unwrap();
        let live = PathBuf::from(format!("{}.partial", train.display())).join("tensorboard");
        assert!(entries.contains(&(trial.id.as_str(), live)), "{line}");
        assert!(
            entries.contains(&(trial.id.as_str(), train.join("tensorboard"))),
            "{line}"
        );
        limoe_tensorboard::read_dir(&train.join("tensorboard")).unwrap();
    }
    assert_eq!(entries.len(), 4, "{line}");

    let log = experiment.join("trials/lr=0.001/log.txt");
    let written = std::fs::metadata(&log).unwrap().modified().unwrap();
    let again = limoe(&["sweep", spec, "--jobs", "2", "-q"], dir.path());
    assert!(again.status.success(), "{}", both(&again));
    let stdout = text(&again.stdout);
    assert!(stdout.contains("0 done, 2 cached, 0 failed"), "{stdout}");
    assert!(
        !stdout.lines().any(|l| l.starts_with("running ")),
        "nothing is started: {stdout}"
    );
    assert!(!stdout.contains("shared stages"), "{stdout}");
    assert_eq!(
        std::fs::metadata(&log).unwrap().modified().unwrap(),
        written
    );
    let record = SweepRecord::read(&experiment).unwrap();
    assert!(
        record
            .trials
            .iter()
            .all(|t| t.state == TrialState::Cached && t.metric.is_some())
    );
}

/// One command stage, run once per seed, that fails for seed 1 (it reads the trial's spec).
const FAILING_SWEEP: &str = r#"name: failing
stages:
  - id: work
    uses: command
    with:
      argv: [sh, -c, 'if grep -q "^seed: 1$" "$LIMOE_SPEC"; then echo "seed one is cursed" >&2; exit 3; fi; echo ok > "$LIMOE_OUTPUT_DIR/ok.txt"']
sweep:
  seeds: [0, 1, 2]
"#;

#[test]
fn a_failing_trial_does_not_stop_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write(dir.path(), "failing.yaml", FAILING_SWEEP);
    let out = limoe(
        &["sweep", spec.to_str().unwrap(), "--jobs", "2"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1), "{}", both(&out));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("trial seed=1: failed"), "{stderr}");
    assert!(stderr.contains("stage `work` failed"), "{stderr}");
    let log = dir
        .path()
        .canonicalize()
        .unwrap()
        .join("runs/failing/trials/seed=1/log.txt");
    assert!(
        stderr.contains(&format!("log: {}", log.display())),
        "{stderr}"
    );
    let stdout = text(&out.stdout);
    assert!(stdout.contains("2 done, 0 cached, 1 failed"), "{stdout}");
    let record = SweepRecord::read(&dir.path().join("runs/failing")).unwrap();
    let states: Vec<TrialState> = record.trials.iter().map(|t| t.state).collect();
    assert_eq!(
        states,
        [TrialState::Done, TrialState::Failed, TrialState::Done]
    );
    assert!(
        record.trials[1].error.as_deref().unwrap().contains("exit"),
        "{:?}",
        record.trials[1]
    );
    assert!(!record.succeeded());
    let cursed = dir.path().join("runs/failing");
    let partial = std::fs::read_dir(&cursed)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".partial"))
        .expect("the failed stage's partial output");
    let command_log = std::fs::read_to_string(partial.join("command.log")).unwrap();
    assert!(command_log.contains("seed one is cursed"), "{command_log}");
}

const SLURM_SWEEP: &str = "name: slurmy
stages:
  - {id: work, uses: command, with: {argv: [sh, -c, 'echo ok > \"$LIMOE_OUTPUT_DIR/ok.txt\"']}}
executor:
  slurm: {partition: gpu, gpus: 1, cpus: 8, time: '1-00:00:00', mem: 32G}
sweep:
  cases:
    size:
      small: {model.depth: 2}
      big: {model.depth: 4}
      wide: {model.width: 128, model.depth: 2}
";

#[test]
fn slurm_script_and_submission_with_a_fake_sbatch() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write(dir.path(), "slurmy.yaml", SLURM_SWEEP);
    let spec = spec.to_str().unwrap();
    let set = "train.lr=0.5 # it's";
    let args = ["sweep", spec, "--executor", "slurm", "--set", set];

    let dry = limoe(&[&args[..], &["--dry-run"]].concat(), dir.path());
    assert!(dry.status.success(), "{}", both(&dry));
    let script = text(&dry.stdout);
    let runs = dir.path().canonicalize().unwrap().join("runs");
    for line in [
        "#SBATCH --job-name=limoe-slurmy".to_owned(),
        "#SBATCH --array=0-2".into(),
        format!(
            "#SBATCH --output={}/slurmy/trials/slurm-%A_%a.out",
            runs.display()
        ),
        "#SBATCH --nodes=1".into(),
        "#SBATCH --ntasks-per-node=1".into(),
        "#SBATCH --cpus-per-task=8".into(),
        "#SBATCH --mem=32G".into(),
        "#SBATCH --time=1-00:00:00".into(),
        "#SBATCH --partition=gpu".into(),
        "#SBATCH --gres=gpu:1".into(),
        "TRIALS=(\n  'size=small'\n  'size=big'\n  'size=wide'\n)".into(),
        "ID=\"${TRIALS[$SLURM_ARRAY_TASK_ID]}\"".into(),
        // One task: no MPI plugin, no `--kill-on-bad-exit`.
        format!(
            "\nsrun --cpus-per-task=8 '{}' --runs-dir '{}' -q run '{spec}' --trial \"$ID\" \
             --set 'train.lr=0.5 # it'\\''s' >\"$DIR/log.txt\" 2>&1\n",
            env!("CARGO_BIN_EXE_limoe"),
            runs.display()
        ),
    ] {
        assert!(script.contains(&line), "missing `{line}` in\n{script}");
    }
    assert!(
        !dir.path().join("runs").exists(),
        "--dry-run writes nothing"
    );

    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let calls = dir.path().join("sbatch-args.txt");
    write_script(
        &bin,
        "sbatch",
        &format!("echo \"$@\" > '{}'\necho 42\n", calls.display()),
    );
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let out = limoe_with(&args, dir.path(), Some(&path));
    assert!(out.status.success(), "{}", both(&out));
    assert!(
        text(&out.stdout).contains("Submitted batch job 42"),
        "{}",
        both(&out)
    );
    let script_path = dir
        .path()
        .canonicalize()
        .unwrap()
        .join("runs/slurmy/sweep.sbatch");
    assert_eq!(
        std::fs::read_to_string(&calls).unwrap().trim(),
        format!("--parsable {}", script_path.display())
    );
    let written = std::fs::read_to_string(&script_path).unwrap();
    assert!(written.contains("#SBATCH --array=0-2"), "{written}");
    let record = SweepRecord::read(&dir.path().join("runs/slurmy")).unwrap();
    assert!(
        record
            .trials
            .iter()
            .all(|t| t.state == TrialState::Submitted)
    );
    assert_eq!(record.executor, "slurm");
    let tasks: Vec<&str> = (record.trials.iter())
        .map(|t| t.slurm_task.as_deref().unwrap())
        .collect();
    assert_eq!(tasks, ["42_0", "42_1", "42_2"]);

    // --status: the first trial has run (here, not through Slurm) and left its record.
    let run = limoe(
        &["run", spec, "--trial", "size=small", "--set", set],
        dir.path(),
    );
    assert!(run.status.success(), "{}", both(&run));
    let status = ["sweep", spec, "--status", "--set", set];
    let out = limoe_with(&status, dir.path(), Some("/nonexistent"));
    assert!(out.status.success(), "{}", both(&out));
    assert!(
        text(&out.stderr).contains("squeue is not on the PATH"),
        "{}",
        both(&out)
    );
    assert!(
        text(&out.stdout).contains("1 done, 0 cached, 0 failed, 2 submitted, 0 running"),
        "{}",
        both(&out)
    );
    // Slurm forgot the job (squeue refuses it); accounting knows how two tasks ended.
    write_script(
        &bin,
        "squeue",
        "echo 'slurm_load_jobs error: Invalid job id specified' >&2\nexit 1\n",
    );
    write_script(
        &bin,
        "sacct",
        "printf '42_0|COMPLETED\\n42_1|CANCELLED by 0\\n42_[5-6]|PENDING\\n'\n",
    );
    let out = limoe_with(&status, dir.path(), Some(&path));
    assert_eq!(out.status.code(), Some(1), "{}", both(&out));
    assert!(
        text(&out.stdout).contains("1 done, 0 cached, 2 failed, 0 submitted, 0 running"),
        "{}",
        both(&out)
    );
    let record = SweepRecord::read(&dir.path().join("runs/slurmy")).unwrap();
    let states: Vec<TrialState> = record.trials.iter().map(|t| t.state).collect();
    assert_eq!(
        states,
        [TrialState::Done, TrialState::Failed, TrialState::Failed]
    );
    let trials = script_path.with_file_name("trials");
    assert_eq!(
        record.trials[1].error.as_deref(),
        Some(
            format!(
                "Slurm task 42_1 ended CANCELLED without a run record; see {}",
                trials.join("slurm-42_1.out").display()
            )
            .as_str()
        )
    );
    assert!(
        (record.trials[2].error.as_deref().unwrap())
            .starts_with("Slurm task 42_2 ended (Slurm no longer lists it) without a run record"),
        "{:?}",
        record.trials[2]
    );
    // A run record that shows up late (a shared file system) wins over what Slurm said; a
    // task Slurm has forgotten since keeps its error.
    let run = limoe(
        &["run", spec, "--trial", "size=big", "--set", set],
        dir.path(),
    );
    assert!(run.status.success(), "{}", both(&run));
    write_script(&bin, "sacct", "exit 1\n");
    let out = limoe_with(&status, dir.path(), Some(&path));
    assert!(
        text(&out.stdout).contains("2 done, 0 cached, 1 failed, 0 submitted, 0 running"),
        "{}",
        both(&out)
    );
    let again = SweepRecord::read(&dir.path().join("runs/slurmy")).unwrap();
    assert_eq!(again.trials[1].state, TrialState::Done);
    assert_eq!(again.trials[1].error, None);
    assert_eq!(again.trials[2], record.trials[2]);

    let out = limoe_with(&args, dir.path(), Some("/nonexistent"));
    assert!(out.status.success(), "{}", both(&out));
    assert!(
        text(&out.stdout).contains("sbatch is not on the PATH"),
        "{}",
        both(&out)
    );
    assert!(text(&out.stdout).contains(&script_path.display().to_string()));
}

#[test]
fn errors_name_the_trial_and_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write(
        dir.path(),
        "bad.yaml",
        "name: bad\nmodel: {moe: {experts: 4, top_k: 1}}\nsweep:\n  cases:\n    k: {one: {model.moe.top_k: 1}, nine: {model.moe.top_k: 9}}\n",
    );
    let spec = spec.to_str().unwrap();
    let out = limoe(&["sweep", spec], dir.path());
    assert_eq!(out.status.code(), Some(2), "{}", both(&out));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("error: trial k=nine: ")
            && stderr.contains("model.moe.top_k: top_k 9 must be between 1 and experts (4)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("1 error in 1 of 2 trials; nothing was run"),
        "{stderr}"
    );
    assert!(!dir.path().join("runs").exists());

    let run = limoe(&["run", spec, "--trial", "k=nne"], dir.path());
    assert_eq!(run.status.code(), Some(2));
    assert!(
        text(&run.stderr).contains("did you mean `k=nine`?"),
        "{}",
        both(&run)
    );

    let plain = write(dir.path(), "plain.yaml", "name: plain\n");
    let out = limoe(&["sweep", plain.to_str().unwrap()], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("has no `sweep` section"),
        "{}",
        both(&out)
    );

    let out = limoe(&["sweep", spec, "--jobs", "0"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("--jobs 0"), "{}", both(&out));

    let out = limoe(&["sweep", spec, "--wait"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("--wait waits for Slurm tasks; give it with --executor slurm"),
        "{}",
        both(&out)
    );
    let fresh = write(
        dir.path(),
        "fresh.yaml",
        "name: fresh\nstages: [{id: work, uses: command, with: {argv: ['true']}}]\nsweep: {seeds: [0]}\n",
    );
    let out = limoe(&["sweep", fresh.to_str().unwrap(), "--status"], dir.path());
    assert_eq!(out.status.code(), Some(1), "{}", both(&out));
    assert!(
        text(&out.stderr).contains("run `limoe sweep SPEC` to make it"),
        "{}",
        both(&out)
    );
}

/// A command stage that records which rank of how many ran it (rank 0 alone runs it),
/// once, as a local trial of two ranks.
#[cfg(feature = "mpi")]
const TWO_RANK_SWEEP: &str = r#"name: ranked
stages:
  - id: ranks
    uses: command
    with:
      argv: [sh, -c, 'echo "$OMPI_COMM_WORLD_RANK/$OMPI_COMM_WORLD_SIZE" > "$LIMOE_OUTPUT_DIR/ranks.txt"']
executor:
  local: {ranks: 2}
sweep:
  seeds: [0]
"#;

#[cfg(feature = "mpi")]
#[test]
fn a_local_trial_of_two_ranks_runs_under_mpirun() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write(dir.path(), "ranked.yaml", TWO_RANK_SWEEP);
    let spec = spec.to_str().unwrap();
    let dry = limoe(&["sweep", spec, "--dry-run"], dir.path());
    assert!(
        text(&dry.stdout).contains("each 2 ranks (mpirun)"),
        "{}",
        both(&dry)
    );
    let out = Command::new(env!("CARGO_BIN_EXE_limoe"))
        .args(["sweep", spec, "-q"])
        .current_dir(dir.path())
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .output()
        .unwrap();
    let record = SweepRecord::read(&dir.path().join("runs/ranked")).unwrap();
    let trial = &record.trials[0];
    let log = std::fs::read_to_string(trial.log()).unwrap_or_default();
    assert!(out.status.success(), "{}\ntrial log:\n{log}", both(&out));
    assert_eq!(trial.state, TrialState::Done);
    let ranks = trial.stage_dir("ranks").unwrap().join("ranks.txt");
    assert_eq!(std::fs::read_to_string(ranks).unwrap().trim(), "0/2");

    let rerun = ["sweep", spec, "--set", "name=elsewhere"];
    let out = limoe_with(&rerun, dir.path(), Some("/nonexistent"));
    assert_eq!(out.status.code(), Some(1), "{}", both(&out));
    assert!(
        text(&out.stderr).contains(
            "executor.local.ranks is 2, so each trial runs under mpirun, which is not on the PATH"
        ),
        "{}",
        both(&out)
    );
}

/// Ctrl-C to a sweep reaches its trials once: each training trial stops at a checkpointed
/// step, and the sweep records them and exits non-zero saying it stopped.
#[test]
fn a_signal_to_the_sweep_stops_its_trials_at_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let long = tiny_sweep("tinysweep", LONG_TRAIN, LR_GRID);
    let spec = write(dir.path(), "tinysweep.yaml", &long);
    let mut sweep = Command::new(env!("CARGO_BIN_EXE_limoe"))
        .args(["sweep", spec.to_str().unwrap(), "--jobs", "2", "-q"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let experiment = dir.path().join("runs/tinysweep");
    let checkpointed = || {
        std::fs::read_dir(&experiment).is_ok_and(|entries| {
            entries.filter_map(Result::ok).any(|e| {
                let checkpoints = e.path().join("checkpoints");
                std::fs::read_dir(checkpoints).is_ok_and(|mut c| c.next().is_some())
            })
        })
    };
    while !checkpointed() {
        assert!(sweep.try_wait().unwrap().is_none(), "the sweep ended early");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // SAFETY: signals a child of this test that has not been reaped.
    assert_eq!(
        unsafe { libc::kill(sweep.id() as libc::pid_t, libc::SIGINT) },
        0
    );
    let out = sweep.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("SIGINT: the sweep stopped"), "{stderr}");
    let record = SweepRecord::read(&experiment).unwrap();
    let stopped = (record.trials.iter())
        .filter(|t| {
            std::fs::read_to_string(t.log())
                .is_ok_and(|log| log.contains("SIGTERM: stopped at step"))
        })
        .count();
    assert!(stopped >= 1, "no trial stopped at a checkpoint: {record:?}");
}

/// `experiments/limoe-claims.yaml` plans every setting of the paper's claims over 3 seeds,
/// the joint V-MoE balancing among them, without its data fetched.
#[test]
fn the_claims_sweep_lists_every_setting_and_seed() {
    let dir = tempfile::tempdir().unwrap();
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments/limoe-claims.yaml");
    let dry = limoe(&["sweep", spec.to_str().unwrap(), "--dry-run"], dir.path());
    assert!(dry.status.success(), "{}", both(&dry));
    let stdout = text(&dry.stdout);
    let settings = [
        "none",
        "vmoe-joint",
        "vmoe-per-modality",
        "local",
        "global",
        "limoe",
        "limoe-nobpr",
        "limoe-c0.5",
        "limoe-c0.5-nobpr",
        "limoe-c1.5",
        "limoe-c1.5-nobpr",
        "dense",
        "two_tower",
    ];
    for setting in settings {
        for seed in 0..3 {
            let id = format!("  setting={setting},seed={seed}  ");
            assert!(stdout.contains(&id), "{id} missing:\n{stdout}");
        }
    }
    assert!(
        stdout.contains(&format!("{} trial(s)", settings.len() * 3)),
        "{stdout}"
    );
    assert!(
        stdout.contains(r#""scope":{"importance":"joint","load":"joint"}"#),
        "{stdout}"
    );
}
