//! The local executor: each trial is `limoe run SPEC --trial ID` in a child process of the
//! running `limoe` binary (under `mpirun -np N` for a trial of several ranks), a fixed number
//! at once, each with its share of the cores, its output in the trial's `log.txt`.

use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use limoe_dist::World;

use super::events::SweepEvent;
use super::executor::{Executor, SweepContext, check_ranks, find_on_path};
use super::record::{SweepRecord, TrialState};
use crate::interrupt;

/// Trials as child processes on this machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Local {
    /// Trials running at once (at least 1).
    pub jobs: usize,
    /// Ranks of each trial (`executor.local.ranks`): 1 is a plain process.
    pub ranks: usize,
    /// Threads of each rank (`RAYON_NUM_THREADS`).
    pub threads: usize,
}

impl Local {
    /// `jobs` trials of `ranks` ranks at once with `max(1, cores / (jobs * ranks))` threads
    /// each rank; warns when that is more processes than cores.
    pub fn new(jobs: usize, ranks: usize) -> Local {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let processes = jobs.saturating_mul(ranks).max(1);
        if processes > cores {
            tracing::warn!(
                "--jobs {jobs} of {ranks} rank(s) each is {processes} processes, more than the \
                 {cores} core(s) here; they will compete for them"
            );
        }
        Local {
            jobs,
            ranks,
            threads: (cores / processes).max(1),
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
        trial.prepare_run()?;
        let log_path = trial.log();
        let log = File::create(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let mut command = if self.ranks > 1 {
            let mut mpirun = Command::new("mpirun");
            // Each rank runs a pool of `threads`; Open MPI's default binding of each rank to
            // one core would crowd them onto it.
            mpirun.args(["--bind-to", "none", "-np", &self.ranks.to_string()]);
            mpirun.arg(exe);
            mpirun
        } else {
            Command::new(exe)
        };
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

    /// Refuses trials of several ranks that could not start or join.
    fn check_ranks(&self, spec: &Path) -> anyhow::Result<()> {
        if self.ranks == 1 {
            return Ok(());
        }
        let setting = "executor.local.ranks";
        check_ranks(spec, setting, self.ranks, World::JOINS_JOBS)?;
        if find_on_path("mpirun").is_none() {
            bail!(
                "{}: {setting} is {}, so each trial runs under mpirun, which is not on the \
                 PATH; install Open MPI (Debian: `apt-get install openmpi-bin`) or set \
                 {setting}: 1",
                spec.display(),
                self.ranks
            );
        }
        Ok(())
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
        self.check_ranks(&sweep.sweep.file)?;
        events(SweepEvent::LocalStarting {
            trials: queue.len(),
            at_once: self.jobs,
            ranks: self.ranks,
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
