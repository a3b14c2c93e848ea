//! The embeddings' all-gather that the contrastive loss differentiates through, on a real
//! two-rank job: this test binary starts itself under `mpirun --oversubscribe -np 2`, and
//! each rank checks its gradient against finite differences.

#![cfg(feature = "mpi")]

use std::process::Command;

use candle_core::{Device, Tensor, Var};
use limoe_dist::{Communicator, World};
use limoe_model::random::Stream;
use limoe_train::data_parallel::gather_rows;

/// Set in the ranks that the parent test starts.
const CHILD: &str = "LIMOE_TRAIN_GATHER_CHILD";
const RANKS: usize = 2;

#[test]
fn the_gathered_loss_differentiates_across_two_ranks() {
    let exe = std::env::current_exe().expect("the test binary's path");
    let output = Command::new("mpirun")
        .args(["--oversubscribe", "-np", &RANKS.to_string()])
        .arg(exe)
        .args([
            "--exact",
            "rank_checks_the_gather_gradient",
            "--test-threads=1",
        ])
        .args(["--nocapture", "--include-ignored"])
        .env(CHILD, "1")
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
    for rank in 0..RANKS {
        assert!(stdout.contains(&format!("rank {rank}: ok")), "{stdout}");
    }
}

/// The log-sum-exp of the Gram matrix of every rank's rows: one loss of the whole batch,
/// which every rank computes alike, as the contrastive loss is.
fn whole_batch_loss(comm: &dyn Communicator, local: &Tensor) -> Tensor {
    let all = gather_rows(comm, local).unwrap();
    let gram = all.matmul(&all.t().unwrap()).unwrap();
    gram.exp().unwrap().sum_all().unwrap().log().unwrap()
}

/// One rank's side; ignored unless the parent test started it. The gradient a rank gets
/// through its own rows is the whole loss's gradient with respect to them (what summing the
/// ranks' gradients relies on): central differences of the loss, moving one value of one
/// rank's rows at a time, agree with it.
#[test]
#[ignore = "runs as a rank of `the_gathered_loss_differentiates_across_two_ranks`"]
fn rank_checks_the_gather_gradient() {
    if std::env::var(CHILD).is_err() {
        return;
    }
    // A failed check must end the job, not leave the other rank waiting in a collective.
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        std::process::abort();
    }));
    let world = World::init().expect("joining the MPI job");
    let comm = world.comm();
    assert_eq!(comm.size(), RANKS);
    let rank = comm.rank();
    let mut stream = Stream::new(3 + rank as u64);
    let shape = (3, 4);
    let values: Vec<f32> = (0..12).map(|_| 0.5 * stream.normal() as f32).collect();
    let x = Var::from_vec(values.clone(), shape, &Device::Cpu).unwrap();
    let grads = whole_batch_loss(comm, x.as_tensor()).backward().unwrap();
    let analytic: Vec<f32> = grads
        .get(&x)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let h = 1e-2;
    for owner in 0..RANKS {
        for i in 0..values.len() {
            let at = |delta: f32| {
                let mut moved = values.clone();
                if rank == owner {
                    moved[i] += delta;
                }
                let x = Tensor::from_vec(moved, shape, &Device::Cpu).unwrap();
                f64::from(whole_batch_loss(comm, &x).to_scalar::<f32>().unwrap())
            };
            let numeric = (at(h) - at(-h)) / (2.0 * f64::from(h));
            if rank == owner {
                let off = (numeric - f64::from(analytic[i])).abs();
                assert!(
                    off < 2e-3 * (1.0 + numeric.abs()),
                    "rank {rank} value {i}: gather gradient {} against {numeric}",
                    analytic[i]
                );
            }
        }
    }
    println!("rank {rank}: ok");
}
