//! The local executor: each trial is `limoe run SPEC --trial ID` in a child process of the
//! running `limoe` binary, a fixed number at once, each with its share of the cores, its
//! output in the trial's `log.txt`.

use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::events::SweepEvent;
use super::executor::{Executor, SweepContext};
use super::record::{SweepRecord, TrialState};
use crate::interrupt;
use crate::runner::LAST_RUN;

/// Trials as child processes on this machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Local {
    /// Trials running at once (at least 1).
    pub jobs: usize,
    /// Threads of each trial (`RAYON_NUM_THREADS`).
    pub threads: usize,
}

impl Local {
    /// `jobs` trials at once with `max(1, cores / jobs)` threads each; warns when `jobs`
    /// exceeds the cores.
    pub fn new(jobs: usize) -> Local {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        if jobs > cores {
            tracing::warn!(
                "--jobs {jobs} is more than the {cores} core(s) here; trials will compete for them"
            );
        }
        Local {
            jobs,
            threads: (cores / jobs.max(1)).max(1),
        }
    }

    /// Starts trial `index` as `limoe --runs-dir DIR -q run SPEC --trial ID --set ...`.
    fn spawn(
        &self,
        exe: &Path,
        sweep: &SweepContext,
        record: &SweepRecord,
        index: usize,
    ) -> anyhow::Result<Child> {
        let trial = &record.trials[index];
        std::fs::create_dir_all(&trial.record_dir)
            .with_context(|| format!("cannot create {}", trial.record_dir.display()))?;
        // A record of an earlier run must not pass for this one.
        let _ = std::fs::remove_file(trial.record_dir.join(LAST_RUN));
        let log_path = trial.log();
        let log = File::create(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let mut command = Command::new(exe);
        command
            .arg("--runs-dir")
            .arg(sweep.runs_dir)
            .arg("-q")
            .arg("run")
            .arg(&sweep.sweep.file)
            .arg("--trial")
            .arg(&trial.id);
        for set in &sweep.sweep.sets {
            command.arg("--set").arg(set);
        }
        command
            // Its own process group: a Ctrl-C at the terminal reaches the sweep alone, which
            // passes one SIGTERM on to each trial (a second signal would end it at once).
            .process_group(0)
            .env("RAYON_NUM_THREADS", self.threads.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        command
            .spawn()
            .with_context(|| format!("cannot start {}", exe.display()))
    }
}

/// A trial running in a child process.
struct Running {
    index: usize,
    child: Child,
    started: Instant,
}

impl Executor for Local {
    fn name(&self) -> &'static str {
        "local"
    }

    /// Runs every pending trial, updating `sweep.json` as trials end. A failed trial is
    /// reported and the others go on.
    fn run_trials(
        &self,
        sweep: &SweepContext,
        record: &mut SweepRecord,
        events: &mut dyn FnMut(SweepEvent),
    ) -> anyhow::Result<()> {
        let exe = std::env::current_exe().context("cannot find the limoe binary to run trials")?;
        let mut queue: VecDeque<usize> = (0..record.trials.len())
            .filter(|&i| record.trials[i].state == TrialState::Pending)
            .collect();
        if queue.is_empty() {
            return Ok(());
        }
        events(SweepEvent::LocalStarting {
            trials: queue.len(),
            at_once: self.jobs,
            threads: self.threads,
        });
        let mut running: Vec<Running> = Vec::new();
        let _stop_trials = interrupt::Catch::install();
        let mut passed_on = false;
        while !queue.is_empty() || !running.is_empty() {
            if interrupt::requested().is_some() && !passed_on {
                queue.clear();
                for r in &running {
                    // SAFETY: signals a child this process started and has not reaped.
                    unsafe { libc::kill(r.child.id() as libc::pid_t, libc::SIGTERM) };
                }
                passed_on = true;
            }
            while running.len() < self.jobs {
                let Some(index) = queue.pop_front() else {
                    break;
                };
                let started = Instant::now();
                match self.spawn(&exe, sweep, record, index) {
                    Ok(child) => running.push(Running {
                        index,
                        child,
                        started,
                    }),
                    Err(e) => finish(record, index, started, Err(format!("{e:#}")), events),
                }
            }
            let mut still = Vec::new();
            for mut r in running {
                let result = match r.child.try_wait() {
                    Ok(None) => {
                        still.push(r);
                        continue;
                    }
                    Ok(Some(status)) if status.success() => Ok(()),
                    Ok(Some(status)) => Err(format!("`limoe run --trial` exited with {status}")),
                    Err(e) => Err(format!("cannot wait: {e}")),
                };
                finish(record, r.index, r.started, result, events);
                record.write(sweep.experiment_dir)?;
            }
            running = still;
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }
}

/// Records how trial `index` ended (from its `last-run.json` when it wrote one) and tells
/// `events`.
fn finish(
    record: &mut SweepRecord,
    index: usize,
    started: Instant,
    result: Result<(), String>,
    events: &mut dyn FnMut(SweepEvent),
) {
    let trial = &mut record.trials[index];
    if !trial.refresh() && result.is_ok() {
        trial.state = TrialState::Done;
    }
    trial.seconds = Some(started.elapsed().as_secs_f64());
    if let Err(error) = result {
        trial.state = TrialState::Failed;
        trial.error.get_or_insert(error);
    }
    events(SweepEvent::TrialEnded(trial));
}
