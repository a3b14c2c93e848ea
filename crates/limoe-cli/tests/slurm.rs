//! `limoe sweep --executor slurm` on a real one-node Slurm cluster, which each test starts
//! (`support::cluster`) where Debian's slurm-wlm and munge are installed, and skips, saying
//! why, where they are not.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use limoe_core::sweep::{SweepRecord, TrialState};
use support::cluster::Cluster;
use support::sweeps::{LONG_TRAIN, SHORT_TRAIN, tiny_sweep};
use support::text;

/// How long a sweep of tiny trials may take on the cluster before the test gives up.
const DEADLINE: Duration = Duration::from_secs(300);

/// The tiny sweep's executor and sweep sections here: four trials of one core each, so that
/// the node runs two at a time.
const ARRAY: &str = "executor:
  slurm: {cpus: 1, mem: 1G, time: '00:10:00'}
sweep:
  grid: {train.lr: [0.001, 0.0003]}
  seeds: [0, 1]
";

fn write_spec(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("sweep.yaml");
    std::fs::write(&path, body).unwrap();
    path
}

/// `limoe ARGS` in `cwd`, talking to `cluster`.
fn limoe(cluster: &Cluster, args: &[&str], cwd: &Path) -> Command {
    let mut command = cluster.command(env!("CARGO_BIN_EXE_limoe"));
    command.args(args).current_dir(cwd);
    command
}

/// `limoe sweep SPEC --executor slurm --wait -q` in `cwd`, talking to `cluster`.
fn waiting_sweep(cluster: &Cluster, spec: &Path, cwd: &Path) -> Command {
    let spec = spec.to_str().unwrap();
    limoe(
        cluster,
        &["sweep", spec, "--executor", "slurm", "--wait", "-q"],
        cwd,
    )
}

fn both(out: &Output) -> String {
    format!("{}{}", text(&out.stdout), text(&out.stderr))
}

#[test]
fn an_array_sweep_runs_on_the_cluster_and_status_follows_it() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), &tiny_sweep("slurmsweep", SHORT_TRAIN, ARRAY));
    let spec = spec.to_str().unwrap();
    let out = limoe(
        &cluster,
        &["sweep", spec, "--executor", "slurm", "-q"],
        dir.path(),
    )
    .output()
    .unwrap();
    let submitted = Instant::now();
    assert!(out.status.success(), "{}\n{}", both(&out), cluster.logs());
    let stdout = text(&out.stdout);
    let job = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Submitted batch job "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no job id in {stdout}"))
        .to_owned();
    let experiment = dir.path().join("runs/slurmsweep");
    let record = SweepRecord::read(&experiment).unwrap();
    let tasks: Vec<Option<String>> = record.trials.iter().map(|t| t.slurm_task.clone()).collect();
    let expected: Vec<Option<String>> = (0..4).map(|i| Some(format!("{job}_{i}"))).collect();
    assert_eq!(tasks, expected);

    let status = || {
        let out = limoe(&cluster, &["sweep", spec, "--status"], dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}\n{}", both(&out), cluster.logs());
        (text(&out.stdout), SweepRecord::read(&experiment).unwrap())
    };
    // Trials take seconds each: right after submission none has ended.
    let (table, record) = status();
    assert!(
        (record.trials.iter())
            .all(|t| matches!(t.state, TrialState::Submitted | TrialState::Running)),
        "{table}"
    );
    let (table, record) = loop {
        let (table, record) = status();
        if record.trials.iter().all(|t| t.state.ended()) {
            break (table, record);
        }
        assert!(
            submitted.elapsed() < DEADLINE,
            "{table}\n{}\n{}",
            cluster.jobs(),
            cluster.logs()
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    eprintln!(
        "array of 4 trials ended within {:.1}s of submission",
        submitted.elapsed().as_secs_f64()
    );
    assert!(
        table.contains("4 done, 0 cached, 0 failed, 0 submitted, 0 running"),
        "{table}"
    );
    for trial in &record.trials {
        assert_eq!(trial.state, TrialState::Done, "{trial:?}");
        assert!(trial.metric.is_some(), "{trial:?}");
        let log = std::fs::read_to_string(trial.log()).unwrap();
        assert!(log.contains("train        done"), "{log}");
    }
    let jobs = cluster.ended_jobs();
    for i in 0..4 {
        assert!(jobs.contains(&format!("{job}_{i}|COMPLETED")), "{jobs}");
    }
    let index = std::fs::read_to_string(dir.path().join("reports/slurmsweep/index.html")).unwrap();
    assert!(
        index.contains("href=\"trials/lr=0.0003,seed=1/index.html\""),
        "{index}"
    );
}

/// One trial on two ranks: `srun --mpi=pmix` starts both, and they train as one run.
#[cfg(feature = "mpi")]
#[test]
fn a_trial_of_two_tasks_runs_as_one_two_rank_run() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    // A command stage after training tells which task of how many ran it (rank 0 alone).
    let spec = tiny_sweep("slurmsweep", SHORT_TRAIN, ARRAY)
        .replace("slurm: {cpus: 1,", "slurm: {ntasks_per_node: 2, cpus: 1,")
        .replace(
            "  - {id: analyze, uses: analyze, needs: [train, eval]}\n",
            "  - {id: ranks, uses: command, needs: [train], with: {argv: [sh, -c, \
             'echo \"$SLURM_PROCID/$SLURM_NTASKS\" > \"$LIMOE_OUTPUT_DIR/ranks.txt\"']}}\n",
        )
        .replace(
            "  grid: {train.lr: [0.001, 0.0003]}\n  seeds: [0, 1]\n",
            "  seeds: [0]\n",
        );
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), &spec);
    let started = Instant::now();
    let out = waiting_sweep(&cluster, &spec, dir.path()).output().unwrap();
    let seconds = started.elapsed().as_secs_f64();
    let record = SweepRecord::read(&dir.path().join("runs/slurmsweep")).unwrap();
    let trial = &record.trials[0];
    let log = std::fs::read_to_string(trial.log()).unwrap_or_default();
    assert!(
        out.status.success(),
        "{}\ntrial log:\n{log}\n{}",
        both(&out),
        cluster.logs()
    );
    eprintln!("2-rank trial submitted, run and recorded in {seconds:.1}s");
    let stdout = text(&out.stdout);
    assert!(stdout.contains("waiting for Slurm job"), "{stdout}");
    assert!(stdout.contains("trial seed=0: done"), "{stdout}");
    assert_eq!(trial.state, TrialState::Done);
    let ranks = trial.stage_dir("ranks").unwrap().join("ranks.txt");
    assert_eq!(std::fs::read_to_string(ranks).unwrap().trim(), "0/2");
    assert!(log.contains("train        done"), "{log}");
    let script = std::fs::read_to_string(dir.path().join("runs/slurmsweep/sweep.sbatch")).unwrap();
    assert!(
        script.contains("srun --cpus-per-task=1 --mpi=pmix --kill-on-bad-exit=1 "),
        "{script}"
    );
}

/// Ctrl-C on `--wait` cancels the array: the running trial stops at a checkpoint, the
/// queued one never starts, and both are recorded as failed, saying so.
#[test]
fn ctrl_c_on_a_waiting_sweep_cancels_its_jobs() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    // Two cores per trial: the second waits in the queue while the first trains.
    let spec = tiny_sweep("slurmsweep", LONG_TRAIN, ARRAY)
        .replace("slurm: {cpus: 1,", "slurm: {cpus: 2,")
        .replace("  seeds: [0, 1]\n", "");
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), &spec);
    let sweep = waiting_sweep(&cluster, &spec, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let experiment = dir.path().join("runs/slurmsweep");
    let checkpointed = || {
        std::fs::read_dir(&experiment).is_ok_and(|entries| {
            entries.filter_map(Result::ok).any(|e| {
                let checkpoints = e.path().join("checkpoints");
                std::fs::read_dir(checkpoints).is_ok_and(|mut c| c.next().is_some())
            })
        })
    };
    let started = Instant::now();
    while !checkpointed() {
        assert!(
            started.elapsed() < DEADLINE,
            "no checkpoint:\n{}",
            cluster.jobs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: signals a child of this test that has not been reaped.
    assert_eq!(
        unsafe { libc::kill(sweep.id() as libc::pid_t, libc::SIGINT) },
        0
    );
    let interrupted = Instant::now();
    let out = sweep.wait_with_output().unwrap();
    eprintln!(
        "the cancelled sweep ended {:.1}s after SIGINT",
        interrupted.elapsed().as_secs_f64()
    );
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{}", both(&out));
    assert!(stderr.contains("SIGINT: cancelled Slurm job"), "{stderr}");
    assert!(stderr.contains("SIGINT: the sweep stopped"), "{stderr}");
    let record = SweepRecord::read(&experiment).unwrap();
    let [first, second] = &record.trials[..] else {
        panic!("{record:?}");
    };
    let queued = second.slurm_task.as_deref().unwrap();
    let jobs = cluster.ended_jobs();
    assert!(jobs.contains(&format!("{queued}|CANCELLED")), "{jobs}");
    assert_eq!(first.state, TrialState::Failed, "{first:?}");
    let log = std::fs::read_to_string(first.log()).unwrap();
    assert!(log.contains("SIGTERM: stopped at step"), "{log}");
    assert_eq!(second.state, TrialState::Failed, "{second:?}");
    let error = second.error.as_deref().unwrap_or_default();
    assert!(
        error.contains("ended CANCELLED without a run record"),
        "{second:?}"
    );
}
