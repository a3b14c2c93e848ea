//! The local executor: each trial is `limoe run SPEC --trial ID` in a child process of this
//! binary, at most `--jobs` at once, each with `cores / jobs` threads, its output in the
//! trial's `log.txt`.

use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use limoe_core::runner::LAST_RUN;
use limoe_core::sweep::{SweepRecord, TrialState};

use crate::sweep::{CANDLE_THREADS, SweepOptions, progress_line};

/// Cores of this machine (1 when unknown).
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Threads for each of `jobs` trials running at once: `max(1, cores / jobs)`; warns when
/// `jobs` exceeds the cores.
pub(crate) fn threads_per_trial(jobs: usize) -> usize {
    let cores = cores();
    if jobs > cores {
        tracing::warn!(
            "--jobs {jobs} is more than the {cores} core(s) here; trials will compete for them"
        );
    }
    (cores / jobs.max(1)).max(1)
}

/// A trial running in a child process.
struct Running {
    index: usize,
    child: Child,
    started: Instant,
}

/// Runs every pending trial of `record`, updating it (and `sweep.json`) as trials end. A failed
/// trial is reported and the others go on.
pub(crate) fn run_trials(
    opts: &SweepOptions,
    threads: usize,
    record: &mut SweepRecord,
    experiment_dir: &Path,
) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find the limoe binary to run trials")?;
    let mut queue: std::collections::VecDeque<usize> = (0..record.trials.len())
        .filter(|&i| record.trials[i].state == TrialState::Pending)
        .collect();
    if queue.is_empty() {
        return Ok(());
    }
    println!(
        "running {} trial(s), {} at once with {threads} thread(s) each",
        queue.len(),
        opts.jobs
    );
    let mut running: Vec<Running> = Vec::new();
    while !queue.is_empty() || !running.is_empty() {
        while running.len() < opts.jobs {
            let Some(index) = queue.pop_front() else {
                break;
            };
            let started = Instant::now();
            match spawn(&exe, opts, threads, record, index) {
                Ok(child) => running.push(Running {
                    index,
                    child,
                    started,
                }),
                Err(e) => finish(record, index, started, Err(format!("{e:#}"))),
            }
        }
        let mut still = Vec::new();
        for mut r in running {
            match r.child.try_wait() {
                Ok(None) => still.push(r),
                Ok(Some(status)) => {
                    let result = if status.success() {
                        Ok(())
                    } else {
                        Err(format!("`limoe run --trial` exited with {status}"))
                    };
                    finish(record, r.index, r.started, result);
                    record.write(experiment_dir)?;
                }
                Err(e) => {
                    finish(record, r.index, r.started, Err(format!("cannot wait: {e}")));
                    record.write(experiment_dir)?;
                }
            }
        }
        running = still;
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Starts trial `index` as `limoe --runs-dir DIR -q run SPEC --trial ID --set ...`.
fn spawn(
    exe: &Path,
    opts: &SweepOptions,
    threads: usize,
    record: &SweepRecord,
    index: usize,
) -> anyhow::Result<Child> {
    let trial = &record.trials[index];
    std::fs::create_dir_all(&trial.record_dir)
        .with_context(|| format!("cannot create {}", trial.record_dir.display()))?;
    // A record of an earlier run must not pass for this one.
    let _ = std::fs::remove_file(trial.record_dir.join(LAST_RUN));
    let log_path = trial.log();
    let log =
        File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
    let mut command = Command::new(exe);
    command
        .arg("--runs-dir")
        .arg(opts.runs_dir)
        .arg("-q")
        .arg("run")
        .arg(opts.spec)
        .arg("--trial")
        .arg(&trial.id);
    for set in opts.sets {
        command.arg("--set").arg(set);
    }
    command
        .env("RAYON_NUM_THREADS", threads.to_string())
        .env("CANDLE_NUM_THREADS", CANDLE_THREADS)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    command
        .spawn()
        .with_context(|| format!("cannot start {}", exe.display()))
}

/// Records how trial `index` ended and prints its line (with the log's tail on failure).
fn finish(record: &mut SweepRecord, index: usize, started: Instant, result: Result<(), String>) {
    let trial = &mut record.trials[index];
    if !trial.refresh() && result.is_ok() {
        trial.state = TrialState::Done;
    }
    trial.seconds = Some(started.elapsed().as_secs_f64());
    if let Err(error) = result {
        trial.state = TrialState::Failed;
        trial.error.get_or_insert(error);
    }
    if trial.state == TrialState::Failed {
        eprintln!("{}", progress_line(trial));
        if let Some(error) = &trial.error {
            eprintln!("  error: {error}");
        }
        for line in log_tail(&trial.log(), 12) {
            eprintln!("  | {line}");
        }
        eprintln!("  log: {}", trial.log().display());
    } else {
        println!("{}", progress_line(trial));
    }
}

/// The last `n` lines of `path` (none when it cannot be read).
fn log_tail(path: &Path, n: usize) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| (*l).to_owned())
        .collect()
}
