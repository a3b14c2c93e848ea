//! The MPI communicator on a real job: this test binary starts itself under
//! `mpirun --oversubscribe -np 3`, and each rank checks every collective against the values
//! the others must have sent.

#![cfg(feature = "mpi")]

#[path = "support/ranks.rs"]
mod ranks;

use limoe_dist::World;

const RANKS: usize = 3;

#[test]
fn collectives_agree_across_three_ranks() {
    ranks::run_ranks(RANKS, "rank_checks_its_collectives");
}

/// One rank's side; ignored unless the parent test started it.
#[test]
#[ignore = "runs as a rank of `collectives_agree_across_three_ranks`"]
fn rank_checks_its_collectives() {
    if !ranks::is_rank_of("rank_checks_its_collectives") {
        return;
    }
    let world = World::init().expect("joining the MPI job");
    let comm = world.comm();
    let (rank, size) = (comm.rank(), comm.size());
    assert_eq!(size, RANKS);
    let r = rank as f32;

    let mut sum = vec![r, 1.0];
    comm.all_reduce_sum(&mut sum);
    assert_eq!(sum, [3.0, 3.0]);
    let mut sum64 = vec![rank as f64 * 0.5];
    comm.all_reduce_sum_f64(&mut sum64);
    assert_eq!(sum64, [1.5]);

    assert_eq!(comm.all_gather(&[r, -r]), [0.0, -0.0, 1.0, -1.0, 2.0, -2.0]);
    assert_eq!(comm.all_gather_bytes(&[rank as u8]), [0, 1, 2]);

    // Rank r sends 10 * r + d to rank d, so it receives 10 * s + r from each rank s.
    let send: Vec<f32> = (0..size).map(|d| (10 * rank + d) as f32).collect();
    let expected: Vec<f32> = (0..size).map(|s| (10 * s + rank) as f32).collect();
    assert_eq!(comm.all_to_all(&send), expected);

    let mut bytes = if rank == 1 {
        b"from one".to_vec()
    } else {
        Vec::new()
    };
    comm.broadcast_bytes(&mut bytes, 1);
    assert_eq!(bytes, b"from one");

    // Even and odd ranks: {0, 2} and {1}.
    let half = comm.split((rank % 2) as u32);
    assert_eq!(
        (half.rank(), half.size()),
        (rank / 2, if rank % 2 == 0 { 2 } else { 1 })
    );
    let mut members = vec![r];
    half.all_reduce_sum(&mut members);
    assert_eq!(members, [if rank % 2 == 0 { 2.0 } else { 1.0 }]);

    comm.barrier();
    ranks::report_ok(rank);
}
