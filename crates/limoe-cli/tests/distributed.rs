//! Training on several ranks through `mpirun`: the same run as on one process, within a
//! tolerance (dense, and LIMoE with routing groups of whole examples, its experts shared by
//! the ranks or not); rank 0 alone writing the run store; ranks that planned differently
//! stopping; a killed rank ending the job, and its checkpoint resuming on one process.

#![cfg(feature = "mpi")]

mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use limoe_core::logs::MetricsRow;
use limoe_train::logs::read_log;
use support::equivalence::{
    STEPS, assert_ok, assert_same_losses, assert_same_weights, run_args, train_output,
};
use support::{limoe, text};

/// `args` with one more `--set`.
fn with(args: &[String], set: &str) -> Vec<String> {
    let mut args = args.to_vec();
    args.extend(["--set".to_owned(), set.to_owned()]);
    args
}

/// `mpirun --oversubscribe -np RANKS limoe ARGS` in `cwd`.
fn mpirun(ranks: usize, args: &[String], cwd: &Path) -> Output {
    Command::new("mpirun")
        .args(["--oversubscribe", "-np", &ranks.to_string()])
        .arg(env!("CARGO_BIN_EXE_limoe"))
        .args(args)
        .current_dir(cwd)
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .output()
        .expect("mpirun (Open MPI's openmpi-bin) must be installed for the `mpi` feature")
}

#[test]
fn two_ranks_train_the_dense_model_one_process_trains() {
    let args = run_args("dense");
    let one = tempfile::tempdir().unwrap();
    assert_ok(&limoe(&args, one.path()), "limoe run on one process");
    let two = tempfile::tempdir().unwrap();
    assert_ok(&mpirun(2, &args, two.path()), "mpirun -np 2 limoe run");

    let (one, two) = (train_output(one.path()), train_output(two.path()));
    let (a, b) = (
        read_log::<MetricsRow>(&one).unwrap(),
        read_log::<MetricsRow>(&two).unwrap(),
    );
    assert_eq!(a.len(), STEPS as usize, "one metrics row per step");
    assert_eq!(b.len(), a.len(), "the two-rank run logs every step once");
    assert_same_losses(&a, &b);
    assert_same_weights(&one, &two, STEPS);
}

/// Routing groups of 8 examples (tiny.yaml's): each rank's 16 pairs of each of two
/// micro-batches are 2 whole groups, so two ranks accumulating two micro-batches route and
/// contrast as one process taking the batch in one pass. Four ranks in two groups, each
/// group sharing the 4 experts (2 per rank, `train.expert_parallel: 2`) and each rank taking
/// a quarter of every batch (2 whole groups), train as that process too: expert gradients
/// are summed over the two ranks holding the same experts, dense ones over all four.
#[test]
fn several_ranks_train_limoe_as_one_process_and_only_rank_zero_writes() {
    let args = run_args("limoe");
    let one = tempfile::tempdir().unwrap();
    assert_ok(&limoe(&args, one.path()), "limoe run on one process");
    let expected = read_log::<MetricsRow>(&train_output(one.path())).unwrap();

    let shared = tempfile::tempdir().unwrap();
    let out = mpirun(4, &with(&args, "train.expert_parallel=2"), shared.path());
    assert_ok(
        &out,
        "mpirun -np 4 limoe run, experts shared by pairs of ranks",
    );
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("experts shared by groups of 2 ranks"),
        "{stderr}"
    );
    let train = train_output(shared.path());
    assert_same_losses(&read_log::<MetricsRow>(&train).unwrap(), &expected);
    assert_same_weights(&train, &train_output(one.path()), STEPS);

    let dir = tempfile::tempdir().unwrap();
    let out = mpirun(2, &with(&args, "train.accumulation=2"), dir.path());
    assert_ok(&out, "mpirun -np 2 limoe run");
    let stdout = text(&out.stdout);
    // One stage table, printed by rank 0.
    assert_eq!(stdout.matches("train ").count(), 1, "{stdout}");
    let train = train_output(dir.path());
    let rows = read_log::<MetricsRow>(&train).unwrap();
    assert_eq!(rows.len(), STEPS as usize);
    assert!(rows.iter().all(|r| r.loss.is_finite() && r.aux > 0.0));
    assert_same_losses(&rows, &expected);
    assert_same_weights(&train, &train_output(one.path()), STEPS);
    let runs = dir.path().join("runs/tiny");
    let partials = std::fs::read_dir(&runs)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".partial")
        })
        .count();
    assert_eq!(partials, 0, "every stage published its output");
}

#[test]
fn ranks_that_plan_differently_stop_before_training() {
    let other = with(&run_args("dense"), "train.lr=0.01");
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("mpirun")
        .args(["--oversubscribe", "-np", "1", env!("CARGO_BIN_EXE_limoe")])
        .args(run_args("dense"))
        .args([":", "-np", "1", env!("CARGO_BIN_EXE_limoe")])
        .args(&other)
        .current_dir(dir.path())
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("rank 1 planned other stages or cache keys than rank 0"),
        "{stderr}"
    );
    let written = std::fs::read_dir(dir.path().join("runs/tiny")).map_or(0, |d| d.count());
    assert_eq!(written, 0, "no stage may run");
}

#[test]
fn ranks_that_cannot_share_the_experts_evenly_stop_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let args = with(&run_args("limoe"), "train.expert_parallel=2");
    let out = mpirun(3, &args, dir.path());
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("train.expert_parallel 2 does not divide the 3 ranks launched"),
        "{stderr}"
    );
}

/// `limoe bench scaling` times the step on one process and on 2 ranks (with and without the
/// experts shared) and prints a rate for each.
#[test]
fn the_scaling_benchmark_times_one_process_and_two_ranks() {
    let out = limoe(&["bench", "scaling"], &support::root());
    assert_ok(&out, "limoe bench scaling");
    let stdout = text(&out.stdout);
    for placement in [
        "1 rank x ",
        "2 ranks x 1 thread(s) ",
        "2 ranks x 1 thread(s), experts / 2",
    ] {
        let row = (stdout.lines())
            .find(|line| line.trim_start().starts_with(placement))
            .unwrap_or_else(|| panic!("no row `{placement}`: {stdout}"));
        // The columns after the placement: pairs, step ms, pairs/s, ratio, share.
        let rate: f64 = (row.split_whitespace().rev())
            .nth(2)
            .and_then(|rate| rate.parse().ok())
            .unwrap_or_else(|| panic!("no pairs/s in `{row}`"));
        assert!(rate > 0.0, "{row}");
    }
}

/// The pid of the rank `rank` of a job whose ranks run in `cwd`.
fn rank_pid(rank: usize, cwd: &Path) -> Option<u32> {
    let marker = format!("OMPI_COMM_WORLD_RANK={rank}");
    std::fs::read_dir("/proc").ok()?.find_map(|entry| {
        let path = entry.ok()?.path();
        let pid: u32 = path.file_name()?.to_str()?.parse().ok()?;
        let in_cwd = std::fs::read_link(path.join("cwd")).ok()? == cwd;
        let environ = std::fs::read(path.join("environ")).ok()?;
        let is_rank = environ.split(|&b| b == 0).any(|v| v == marker.as_bytes());
        (in_cwd && is_rank).then_some(pid)
    })
}

/// `kill -9` of one rank mid-training ends the job within seconds, naming the rank, and the
/// next launch resumes from the last checkpoint: here on one process, from the checkpoint of
/// two ranks that shared the experts (it stores them whole).
#[test]
fn a_killed_rank_ends_the_job_and_the_next_launch_resumes() {
    let args = with(
        &run_args("limoe"),
        "train={steps: 30, batch_size: 64, checkpoint_every: 5, eval_every: 30}",
    );
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().canonicalize().unwrap();
    let mut job = Command::new("mpirun")
        .args(["--oversubscribe", "-np", "2", env!("CARGO_BIN_EXE_limoe")])
        .args(with(&args, "train.expert_parallel=2"))
        .current_dir(&cwd)
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let runs = cwd.join("runs/tiny");
    let checkpointed = || {
        let partials = std::fs::read_dir(&runs).into_iter().flatten().flatten();
        partials
            .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
            .flat_map(|e| {
                std::fs::read_dir(e.path().join("checkpoints"))
                    .into_iter()
                    .flatten()
            })
            .flatten()
            .any(|step| step.path().join("state.json").exists())
    };
    let deadline = Instant::now() + Duration::from_secs(300);
    while !checkpointed() {
        assert!(job.try_wait().unwrap().is_none(), "the job ended early");
        assert!(Instant::now() < deadline, "no checkpoint after 300 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = rank_pid(1, &cwd).expect("rank 1 is running");
    // SAFETY: signals a process of this test's job.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) }, 0);
    let killed = Instant::now();
    let out = job.wait_with_output().unwrap();
    assert!(
        killed.elapsed() < Duration::from_secs(30),
        "the job outlived its rank"
    );
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("rank 1"),
        "the job's end names the rank: {stderr}"
    );

    // The next launch, on one process: the checkpoint of two ranks resumes at world size 1
    // and ends where an uninterrupted one-process run ends.
    let resumed = limoe(&args, &cwd);
    assert_ok(&resumed, "the next launch");
    let stderr = text(&resumed.stderr);
    assert!(stderr.contains("train: resuming after step"), "{stderr}");
    let rows = read_log::<MetricsRow>(&train_output(&cwd)).unwrap();
    let straight = tempfile::tempdir().unwrap();
    assert_ok(&limoe(&args, straight.path()), "an uninterrupted run");
    let expected = read_log::<MetricsRow>(&train_output(straight.path())).unwrap();
    assert_eq!(rows.len(), expected.len(), "every step logged once");
    assert_same_losses(&rows, &expected);
    assert_same_weights(&train_output(&cwd), &train_output(straight.path()), 30);
}
