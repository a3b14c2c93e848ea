//! The train stage through the `limoe` binary: exact resume after a real kill, the
//! non-finite guard, atomic checkpoints at the stage level, and the TensorBoard events that
//! show it while it trains.

mod support;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use limoe_core::logs::{EvalRow, MetricsRow, RoutingRow};
use limoe_tensorboard::proto::{Event, Kind, What};
use limoe_train::logs::{read_log, tensorboard_dir};
use support::{limoe, root, text};

/// `limoe run` on the tiny experiment shrunk to a few seconds: 96 synthetic pairs, only the
/// ingest and train stages, and `train` set to the flow mapping body `train`.
fn run_args(train: &str) -> Vec<String> {
    let tiny = root().join("experiments/tiny.yaml");
    [
        "run",
        tiny.to_str().unwrap(),
        "--set",
        "data.sources=[{synthetic: {pairs: 96}}]",
        "--set",
        &format!("train={{{train}}}"),
        "--set",
        "eval.batch_size=16",
        "--set",
        "stages=[{id: ingest, uses: ingest}, {id: train, uses: train, needs: [ingest]}]",
    ]
    .map(String::from)
    .to_vec()
}

/// Starts `limoe` with `args` in `cwd`, its output discarded, for a test to watch or kill.
fn spawn_quiet(args: &[String], cwd: &Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_limoe"))
        .args(args)
        .current_dir(cwd)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("limoe starts")
}

/// Runs `args` in `cwd` and fails the test with the output when the run fails.
fn run_ok(args: &[String], cwd: &Path) -> Output {
    let out = limoe(args, cwd);
    assert!(
        out.status.success(),
        "limoe run failed ({}):\n{}{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

/// The train stage's output under `cwd`: the finished one, or with `partial` its `.partial`.
fn train_dir(cwd: &Path, partial: bool) -> Option<PathBuf> {
    std::fs::read_dir(cwd.join("runs/tiny"))
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            p.is_dir() && name.starts_with("train-") && name.ends_with(".partial") == partial
        })
}

/// The steps of the `step-N` directories under `out/checkpoints` that hold a `state.json`.
fn checkpoint_steps(out: &Path) -> Vec<u64> {
    let Ok(entries) = std::fs::read_dir(out.join("checkpoints")) else {
        return Vec::new();
    };
    let mut steps: Vec<u64> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("state.json").is_file())
        .filter_map(|p| p.file_name()?.to_str()?.strip_prefix("step-")?.parse().ok())
        .collect();
    steps.sort_unstable();
    steps
}

fn checkpoint(out: &Path, step: u64) -> PathBuf {
    out.join(format!("checkpoints/step-{step:08}"))
}

fn f64_field(out: &mut String, name: &str, value: f64) {
    write!(out, " {name}={value:?}({:016x})", value.to_bits()).unwrap();
}

/// A metrics row without the columns that depend on time (wall seconds, pairs per second),
/// every f64 with its bits.
fn metrics_print(r: &MetricsRow) -> String {
    let mut s = format!("step={}", r.step);
    for (name, value) in [
        ("lr", r.lr),
        ("loss", r.loss),
        ("contrastive", r.contrastive),
        ("aux", r.aux),
        ("local_entropy_image", r.local_entropy_image),
        ("local_entropy_text", r.local_entropy_text),
        ("global_entropy_image", r.global_entropy_image),
        ("global_entropy_text", r.global_entropy_text),
        ("importance_image", r.importance_image),
        ("importance_text", r.importance_text),
        ("load_image", r.load_image),
        ("load_text", r.load_text),
        ("importance_joint", r.importance_joint),
        ("load_joint", r.load_joint),
        ("z_loss_image", r.z_loss_image),
        ("z_loss_text", r.z_loss_text),
        ("grad_norm", r.grad_norm),
        ("logit_scale", r.logit_scale),
    ] {
        f64_field(&mut s, name, value);
    }
    s
}

fn routing_print(r: &RoutingRow) -> String {
    let mut s = format!(
        "step={} split={} block={} modality={} expert={} tokens={} dropped={}",
        r.step,
        r.split,
        r.block,
        r.modality.name(),
        r.expert,
        r.tokens,
        r.dropped
    );
    f64_field(&mut s, "mean_gate", r.mean_gate);
    f64_field(&mut s, "local_entropy", r.local_entropy);
    f64_field(&mut s, "global_entropy", r.global_entropy);
    s
}

fn eval_print(r: &EvalRow) -> String {
    let mut s = format!("step={} dataset={} metric={}", r.step, r.dataset, r.metric);
    f64_field(&mut s, "value", r.value);
    s
}

/// Every summary value of `events` but the throughput (which depends on time): its step
/// and tag, a tab, and its numbers (a picture: its size and bytes' length).
fn summaries_print(events: &[Event]) -> Vec<String> {
    let mut lines = Vec::new();
    for event in events {
        let Some(What::Summary(summary)) = &event.what else {
            continue;
        };
        for value in &summary.value {
            let numbers = match &value.kind {
                Some(Kind::SimpleValue(v)) => format!("{v:?}"),
                Some(Kind::Histo(h)) => format!("{:?}", h.bucket),
                Some(Kind::Image(i)) => {
                    format!("{}x{} {}", i.width, i.height, i.encoded_image_string.len())
                }
                None => "none".to_owned(),
            };
            if value.tag != "train/pairs_per_second" {
                lines.push(format!("step={} {}\t{numbers}", event.step, value.tag));
            }
        }
    }
    lines
}

/// What a finished (or copied) train output holds that must not depend on interruptions.
#[derive(PartialEq)]
struct Outcome {
    metrics: Vec<String>,
    routing: Vec<String>,
    events: Vec<String>,
    eval: Vec<String>,
    model: Vec<u8>,
    optimizer: Vec<u8>,
}

impl Outcome {
    /// Reads the logs of `out` and its checkpoint of `final_step`.
    fn read(out: &Path, final_step: u64) -> Outcome {
        let read = |file: &str| {
            let path = checkpoint(out, final_step).join(file);
            std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        };
        Outcome {
            metrics: read_log::<MetricsRow>(out)
                .unwrap()
                .iter()
                .map(metrics_print)
                .collect(),
            routing: read_log::<RoutingRow>(out)
                .unwrap()
                .iter()
                .map(routing_print)
                .collect(),
            events: summaries_print(&limoe_tensorboard::read_dir(&tensorboard_dir(out)).unwrap()),
            eval: read_log::<EvalRow>(out)
                .unwrap()
                .iter()
                .map(eval_print)
                .collect(),
            model: read("model.safetensors"),
            optimizer: read("optimizer.safetensors"),
        }
    }

    /// Fails with the first row that differs from `expected`, log by log.
    fn assert_same(&self, expected: &Outcome, what: &str) {
        for (log, got, want) in [
            ("metrics", &self.metrics, &expected.metrics),
            ("routing", &self.routing, &expected.routing),
            ("eval", &self.eval, &expected.eval),
            ("tensorboard", &self.events, &expected.events),
        ] {
            if let Some(i) = (0..got.len().max(want.len())).find(|&i| got.get(i) != want.get(i)) {
                panic!(
                    "{what}: {log} log row {i} differs from the uninterrupted run \
                     ({} rows vs {}):\n  got:      {:?}\n  expected: {:?}",
                    got.len(),
                    want.len(),
                    got.get(i),
                    want.get(i)
                );
            }
        }
        assert!(
            self.model == expected.model,
            "{what}: the final model.safetensors differs from the uninterrupted run's"
        );
        assert!(
            self.optimizer == expected.optimizer,
            "{what}: the final optimizer.safetensors differs from the uninterrupted run's"
        );
    }
}

/// Every step from 1 to `last` has exactly one metrics row, in order.
fn assert_every_step_once(outcome: &Outcome, last: u64) {
    let steps: Vec<String> = outcome
        .metrics
        .iter()
        .map(|r| r.split(' ').next().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = (1..=last).map(|s| format!("step={s}")).collect();
    assert_eq!(
        steps, expected,
        "metrics rows are not exactly steps 1..={last}"
    );
}

const RESUME_STEPS: u64 = 60;

/// Train straight in one directory; in another, SIGKILL the same run mid-way (after a
/// checkpoint, between two others) and run it again: every time-independent number of the
/// logs and the final checkpoint's bytes are identical.
#[test]
fn killed_training_resumes_to_identical_logs_and_weights() {
    // Accumulation and periodic evaluation are on so that the loader position, the per-step
    // noise seeds and the evaluation between steps all have to survive the kill.
    let train = format!(
        "steps: {RESUME_STEPS}, batch_size: 8, accumulation: 2, warmup_steps: 1, \
         eval_every: 20, checkpoint_every: 5, log_every: 1"
    );
    let args = run_args(&train);

    let straight = tempfile::tempdir().unwrap();
    run_ok(&args, straight.path());
    let expected = Outcome::read(
        &train_dir(straight.path(), false).expect("the straight run's train output"),
        RESUME_STEPS,
    );
    assert_every_step_once(&expected, RESUME_STEPS);

    let killed = tempfile::tempdir().unwrap();
    let mut child = spawn_quiet(&args, killed.path());
    let deadline = Instant::now() + Duration::from_secs(300);
    let seen = loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "the run ended ({status}) before a checkpoint of step 15..{RESUME_STEPS} \
                 was seen; make it longer"
            );
        }
        let seen = train_dir(killed.path(), true)
            .map(|p| checkpoint_steps(&p))
            .and_then(|steps| steps.into_iter().find(|&s| s >= 15));
        if let Some(step) = seen {
            break step;
        }
        assert!(Instant::now() < deadline, "no checkpoint after 300 s");
        std::thread::sleep(Duration::from_millis(5));
    };
    // Land between two checkpoints rather than right after one.
    std::thread::sleep(Duration::from_millis(150));
    child.kill().unwrap();
    let status = child.wait().unwrap();
    let partial = train_dir(killed.path(), true).expect("the killed run's .partial");
    let left = checkpoint_steps(&partial);
    let last = *left.last().unwrap();
    assert!(
        !status.success() && seen < RESUME_STEPS && last < RESUME_STEPS,
        "the kill did not land mid-run: exit {status}, checkpoints {left:?}"
    );
    assert!(
        train_dir(killed.path(), false).is_none(),
        "the killed run has a finished train output"
    );
    eprintln!("killed with checkpoints {left:?} (step {seen} seen)");

    let resumed = run_ok(&args, killed.path());
    let stderr = text(&resumed.stderr);
    assert!(
        stderr.contains(&format!("train: resuming after step {last}")),
        "the second run did not resume from step {last}: {stderr}"
    );
    let got = Outcome::read(
        &train_dir(killed.path(), false).expect("the resumed run's train output"),
        RESUME_STEPS,
    );
    got.assert_same(&expected, &format!("killed after step {last} and resumed"));
}

/// A learning rate of 1e30 without clipping blows the weights up at step 1: the loss of
/// step 2 is NaN. The stage fails with exit code 1 naming the step, records `nonfinite.txt`
/// and keeps the checkpoint of the step before.
#[test]
fn nonfinite_loss_stops_training_and_keeps_the_last_good_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let args = run_args(
        "steps: 20, batch_size: 8, warmup_steps: 0, lr: 1e30, min_lr: 0, grad_clip: null, \
         eval_every: 20, checkpoint_every: 1, log_every: 1",
    );
    let out = limoe(&args, dir.path());
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "exit status; stderr: {stderr}");
    let partial = train_dir(dir.path(), true).expect("the failed train stage's .partial");
    let record = std::fs::read_to_string(partial.join("nonfinite.txt"))
        .expect("nonfinite.txt in the .partial directory");
    let failed: u64 = record
        .strip_prefix("step ")
        .and_then(|r| r.split(':').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("nonfinite.txt does not start with `step N:`: {record}"));
    assert!(
        (2..=20).contains(&failed) && (record.contains("NaN") || record.contains("inf")),
        "nonfinite.txt: {record}"
    );
    assert!(
        stderr.contains(&format!("step {failed}: "))
            && stderr.contains(&format!("the last good checkpoint, of step {}", failed - 1)),
        "the error does not name step {failed} and the checkpoint kept: {stderr}"
    );
    assert!(
        train_dir(dir.path(), false).is_none(),
        "a failed stage has a finished output"
    );

    let good = failed - 1;
    assert_eq!(
        checkpoint_steps(&partial).last(),
        Some(&good),
        "the last checkpoint is not the one before the failing step {failed}"
    );
    let kept = checkpoint(&partial, good);
    for file in ["model.safetensors", "optimizer.safetensors"] {
        let len = std::fs::metadata(kept.join(file)).map_or(0, |m| m.len());
        assert!(len > 0, "{} is missing or empty", kept.join(file).display());
    }
    let state = std::fs::read_to_string(kept.join("state.json")).unwrap();
    assert!(
        state.contains(&format!("\"step\": {good},")),
        "state.json of {}: {state}",
        kept.display()
    );
    let metrics = read_log::<MetricsRow>(&partial).unwrap();
    let steps: Vec<i64> = metrics.iter().map(|r| r.step).collect();
    assert_eq!(
        steps,
        (1..=good as i64).collect::<Vec<_>>(),
        "metrics rows of the failed run"
    );
    assert!(
        metrics.iter().all(|r| r.loss.is_finite()),
        "a logged loss is not finite: {metrics:?}"
    );

    // Before the first checkpoint there is none to keep, and the message says so.
    let early = tempfile::tempdir().unwrap();
    let args = run_args(
        "steps: 20, batch_size: 8, warmup_steps: 0, lr: 1e30, min_lr: 0, grad_clip: null, \
         eval_every: 20, checkpoint_every: 20, log_every: 1",
    );
    let stderr = text(&limoe(&args, early.path()).stderr);
    assert!(
        stderr.contains("no checkpoint had been saved yet, so there is none to keep")
            && !stderr.contains("last good checkpoint"),
        "{stderr}"
    );
}

const ATOMIC_STEPS: u64 = 40;
/// The last complete checkpoint left behind in the atomic-checkpoint test.
const ATOMIC_GOOD: u64 = 20;

/// Debris of killed saves — a `.tmp-step-N` directory (complete but never renamed, and one
/// with only the model) and a `step-N` directory without `state.json` — is not picked up,
/// and a newest checkpoint whose model file was truncated is skipped with a warning naming
/// it: the run resumes from the previous complete checkpoint and finishes as an
/// uninterrupted one.
#[test]
fn debris_of_killed_saves_is_never_resumed_from() {
    let dir = tempfile::tempdir().unwrap();
    let args = run_args(&format!(
        "steps: {ATOMIC_STEPS}, batch_size: 8, warmup_steps: 1, eval_every: {ATOMIC_STEPS}, \
         checkpoint_every: 5, log_every: 1, keep_checkpoints: 100"
    ));
    run_ok(&args, dir.path());
    let done = train_dir(dir.path(), false).expect("the train output");
    let expected = Outcome::read(&done, ATOMIC_STEPS);
    assert_every_step_once(&expected, ATOMIC_STEPS);

    // Turn the finished output back into a `.partial` killed after saving step ATOMIC_GOOD
    // (its logs still run to the end: the resume must truncate them).
    let partial = PathBuf::from(format!("{}.partial", done.display()));
    std::fs::rename(&done, &partial).unwrap();
    std::fs::remove_file(partial.join("manifest.json")).unwrap();
    let checkpoints = partial.join("checkpoints");
    let step_dir = |step: u64| checkpoint(&partial, step);
    let tmp_dir = |step: u64| checkpoints.join(format!(".tmp-step-{step:08}"));
    // Killed just before the rename: everything written, state.json included.
    std::fs::rename(step_dir(ATOMIC_GOOD + 5), tmp_dir(ATOMIC_GOOD + 5)).unwrap();
    // Killed while writing the tensors.
    std::fs::create_dir(tmp_dir(ATOMIC_GOOD + 15)).unwrap();
    std::fs::copy(
        step_dir(ATOMIC_GOOD + 15).join("model.safetensors"),
        tmp_dir(ATOMIC_GOOD + 15).join("model.safetensors"),
    )
    .unwrap();
    // A step directory without its state.
    std::fs::remove_file(step_dir(ATOMIC_GOOD + 10).join("state.json")).unwrap();
    // Truncated by a full disk or a careless copy, its state intact.
    let truncated = step_dir(ATOMIC_GOOD + 15).join("model.safetensors");
    let bytes = std::fs::read(&truncated).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    for step in (ATOMIC_GOOD + 20..=ATOMIC_STEPS).step_by(5) {
        std::fs::remove_dir_all(step_dir(step)).unwrap();
    }
    assert_eq!(checkpoint_steps(&partial).last(), Some(&(ATOMIC_GOOD + 15)));

    let out = run_ok(&args, dir.path());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("train: resuming after step {ATOMIC_GOOD}")),
        "the run did not resume from step {ATOMIC_GOOD}: {stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "skipping the checkpoint of step {}: ",
            ATOMIC_GOOD + 15
        )) && stderr.contains(&format!("step-{:08}/model.safetensors", ATOMIC_GOOD + 15)),
        "the truncated checkpoint was not named as skipped: {stderr}"
    );
    let done = train_dir(dir.path(), false).expect("the resumed run's train output");
    Outcome::read(&done, ATOMIC_STEPS).assert_same(&expected, "resumed past killed saves");
    let debris: Vec<String> = std::fs::read_dir(done.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.join("state.json").is_file())
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        debris.is_empty(),
        "debris left after the resumed run: {debris:?}"
    );
}

/// Starts the run of `args` in `cwd` and waits until training has written its first
/// checkpoint (so its loop, which catches signals, is running).
fn start_training(args: &[String], cwd: &Path) -> std::process::Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_limoe"))
        .args(args)
        .current_dir(cwd)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("limoe starts");
    let deadline = Instant::now() + Duration::from_secs(300);
    while train_dir(cwd, true).is_none_or(|p| checkpoint_steps(&p).is_empty()) {
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        assert!(Instant::now() < deadline, "no checkpoint after 300 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    child
}

fn signal(child: &std::process::Child, signal: libc::c_int) {
    // SAFETY: signals a child of this test that has not been reaped.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, signal) }, 0);
}

/// Ctrl-C mid-training finishes the step, checkpoints it and exits non-zero saying where it
/// stopped, and the rerun resumes from that step; a second signal ends the process at once.
#[test]
fn a_signal_stops_training_at_a_checkpointed_step() {
    let args = run_args(
        "steps: 60, batch_size: 8, warmup_steps: 1, eval_every: 60, checkpoint_every: 7, \
         log_every: 1",
    );
    let dir = tempfile::tempdir().unwrap();
    let child = start_training(&args, dir.path());
    signal(&child, libc::SIGINT);
    let out = child.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let stopped: u64 = stderr
        .split("SIGINT: stopped at step ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no `stopped at step N`: {stderr}"));
    assert!(stderr.contains("rerun to continue"), "{stderr}");
    let partial = train_dir(dir.path(), true).expect("the stopped run's .partial");
    assert_eq!(checkpoint_steps(&partial).last(), Some(&stopped));
    let resumed = run_ok(&args, dir.path());
    assert!(
        text(&resumed.stderr).contains(&format!("train: resuming after step {stopped}")),
        "{}",
        text(&resumed.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let child = start_training(&args, dir.path());
    signal(&child, libc::SIGINT);
    signal(&child, libc::SIGTERM);
    let out = child.wait_with_output().unwrap();
    // Whichever of the two the kernel delivers second ends the process, with its status.
    let at_once = [128 + libc::SIGINT, 128 + libc::SIGTERM].map(Some);
    assert!(
        at_once.contains(&out.status.code()),
        "{}: {}",
        out.status,
        text(&out.stderr)
    );
}

/// The tag of a line of [`summaries_print`].
fn tag(line: &str) -> &str {
    line.split_once(' ').unwrap().1.split('\t').next().unwrap()
}

/// While a run trains, its TensorBoard events grow at every log step and parse (a torn last
/// record left out), as TensorBoard reads them; the finished output holds every training
/// metric at every step, the periodic evaluation, the routing histograms per block and
/// modality, and the specialisation picture.
#[test]
fn tensorboard_events_grow_while_training_and_hold_every_series() {
    const STEPS: usize = 120;
    let dir = tempfile::tempdir().unwrap();
    let args = run_args(&format!(
        "steps: {STEPS}, batch_size: 8, warmup_steps: 1, eval_every: 60, \
         checkpoint_every: {STEPS}, log_every: 5"
    ));
    let mut child = spawn_quiet(&args, dir.path());
    let losses = |events: &[Event]| {
        let lines = summaries_print(events);
        lines.iter().filter(|l| l.contains(" train/loss\t")).count()
    };
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        let live = train_dir(dir.path(), true).map(|p| tensorboard_dir(&p));
        if let Some(events) = live.and_then(|d| limoe_tensorboard::read_dir(&d).ok()) {
            let count = losses(&events);
            if count > 0 && seen.last() != Some(&count) {
                seen.push(count);
            }
        }
        assert!(Instant::now() < deadline, "the run took over 300 s");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "the run failed: {status}");
    assert!(
        seen.len() >= 2 && seen.windows(2).all(|w| w[0] < w[1]),
        "the events did not grow while training ran: losses seen {seen:?}"
    );

    let done = train_dir(dir.path(), false).expect("the train output");
    let lines = summaries_print(&limoe_tensorboard::read_dir(&tensorboard_dir(&done)).unwrap());
    let tags: std::collections::BTreeSet<&str> = lines.iter().map(|l| tag(l)).collect();
    for name in [
        "train/loss",
        "train/lr",
        "train/grad_norm",
        "train/logit_scale",
    ] {
        let count = lines.iter().filter(|l| tag(l) == name).count();
        assert_eq!(count, STEPS, "{name} at every step: {count}");
    }
    for prefix in [
        "eval/",
        "routing/train/block 1/image",
        "routing/train/block 3/text",
        "routing/val/block 1/text",
        "specialisation/val",
    ] {
        assert!(
            tags.iter().any(|t| t.starts_with(prefix)),
            "no {prefix} series among {tags:?}"
        );
    }
}

/// `train.precision: bf16` runs the trainer's mixed-precision path on the CPU (and says that
/// it is slower there): its first steps' losses track an f32 run's from the same weights.
#[test]
fn bf16_training_tracks_f32_and_says_it_is_slow_on_the_cpu() {
    let train = "steps: 3, batch_size: 8, warmup_steps: 0, eval_every: 3, checkpoint_every: 3, \
                 log_every: 1";
    let losses = |precision: &str| {
        let dir = tempfile::tempdir().unwrap();
        let out = run_ok(
            &run_args(&format!("{train}, precision: {precision}")),
            dir.path(),
        );
        let out_dir = train_dir(dir.path(), false).expect("the train stage's output");
        let rows = read_log::<MetricsRow>(&out_dir).unwrap();
        let losses: Vec<f64> = rows.iter().map(|row| row.loss).collect();
        (losses, text(&out.stderr))
    };
    let (f32_losses, f32_stderr) = losses("f32");
    let (bf16_losses, bf16_stderr) = losses("bf16");
    let note = "train.precision: bf16 on the CPU";
    assert!(bf16_stderr.contains(note), "no `{note}` in\n{bf16_stderr}");
    assert!(!f32_stderr.contains(note), "{f32_stderr}");
    assert_eq!(bf16_losses.len(), 3, "{bf16_losses:?}");
    // The first step starts from the same weights: only bf16 rounding parts them (under 1%
    // at this size, see crates/limoe-model/tests/model.rs).
    let off = (bf16_losses[0] - f32_losses[0]).abs() / f32_losses[0];
    assert!(off < 0.02, "bf16 {bf16_losses:?} vs f32 {f32_losses:?}");
    assert!(
        bf16_losses.iter().all(|loss| loss.is_finite()),
        "{bf16_losses:?}"
    );
}
