//! The world of one process: every collective returns what it was given.

use limoe_dist::{Communicator, Solo, World};

#[test]
fn a_world_of_one_returns_its_own_values() {
    let comm = Solo;
    assert_eq!((comm.rank(), comm.size()), (0, 1));
    let mut values = vec![1.5, -2.0];
    comm.all_reduce_sum(&mut values);
    assert_eq!(values, [1.5, -2.0]);
    assert_eq!(comm.all_gather(&[3.0]), [3.0]);
    assert_eq!(comm.all_to_all(&[4.0, 5.0]), [4.0, 5.0]);
    let mut bytes = b"plan".to_vec();
    comm.broadcast_bytes(&mut bytes, 0);
    assert_eq!(bytes, b"plan");
    let part = comm.split(7);
    assert_eq!((part.rank(), part.size()), (0, 1));
    comm.barrier();
    assert_eq!(World::solo().comm().size(), 1);
}
