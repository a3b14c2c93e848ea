//! The embeddings' all-gather that the contrastive loss differentiates through, on a real
//! two-rank job: this test binary starts itself under `mpirun --oversubscribe -np 2`, and
//! each rank checks its gradient against finite differences.

#![cfg(feature = "mpi")]

#[path = "../../limoe-dist/tests/support/ranks.rs"]
mod ranks;

use candle_core::{Device, Tensor, Var};
use limoe_dist::{Communicator, World};
use limoe_model::random::Stream;
use limoe_train::data_parallel::gather_rows;

const RANKS: usize = 2;

#[test]
fn the_gathered_loss_differentiates_across_two_ranks() {
    ranks::run_ranks(RANKS, "rank_checks_the_gather_gradient");
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
    if !ranks::is_rank_of("rank_checks_the_gather_gradient") {
        return;
    }
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
    ranks::report_ok(rank);
}
