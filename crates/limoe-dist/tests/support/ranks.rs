//! Test binaries that start themselves as the ranks of an `mpirun --oversubscribe` job: a
//! parent test launches the job and checks that every rank passed; each rank's side is an
//! ignored test that the parent names and that returns at once anywhere else. Shared by the
//! MPI tests of several crates (`#[path]`-included).

use std::process::Command;

/// Names, in a rank's environment, the ignored test the parent started it for.
const RANK_OF: &str = "LIMOE_TEST_RANK_OF";

/// Starts this test binary as `ranks` ranks running the ignored test `child`, and fails
/// unless the job succeeds and every rank reported with [`report_ok`].
pub fn run_ranks(ranks: usize, child: &str) {
    let exe = std::env::current_exe().expect("the test binary's path");
    let output = Command::new("mpirun")
        .args(["--oversubscribe", "-np", &ranks.to_string()])
        .arg(exe)
        .args(["--exact", child, "--test-threads=1"])
        .args(["--nocapture", "--include-ignored"])
        .env(RANK_OF, child)
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .output()
        .expect("mpirun (Open MPI's openmpi-bin) must be installed for the `mpi` feature");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "mpirun failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for rank in 0..ranks {
        assert!(stdout.contains(&format!("rank {rank}: ok")), "{stdout}");
    }
}

/// Whether this process is a rank that [`run_ranks`] started for `child`; when it is, a
/// failed check ends the whole job instead of leaving the other ranks waiting in a
/// collective.
pub fn is_rank_of(child: &str) -> bool {
    if std::env::var_os(RANK_OF).is_none_or(|test| test != child) {
        return false;
    }
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        std::process::abort();
    }));
    true
}

/// What a rank prints once its checks passed.
pub fn report_ok(rank: usize) {
    println!("rank {rank}: ok");
}
