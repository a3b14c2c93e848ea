//! The MPI communicator (rsmpi over the system's MPI).

use std::time::Duration;

use anyhow::bail;
use mpi::Threading;
use mpi::collective::SystemOperation;
use mpi::environment::Universe;
use mpi::topology::{Color, SimpleCommunicator};
use mpi::traits::{Communicator as _, CommunicatorCollectives, Root};

use crate::{Communicator, Launch};

/// How long a rank waiting at a barrier sleeps between checks.
const BARRIER_POLL: Duration = Duration::from_millis(2);

/// A communicator over MPI. Buffer lengths are MPI counts (`i32`): a call moves fewer than
/// 2^31 values, which gradient buckets and embeddings are far below.
pub struct MpiComm {
    comm: SimpleCommunicator,
}

// SAFETY: MPI runs at `Threading::Serialized` (checked in `join`), under which any thread may
// call MPI as long as no two do at once; limoe's collectives come from the training loop one
// after another (the compute pool runs a pass while the calling thread waits for it).
unsafe impl Send for MpiComm {}
// SAFETY: as for `Send`.
unsafe impl Sync for MpiComm {}

/// Initializes MPI and checks that its world is the one the launcher described.
pub fn join(launch: &Launch) -> anyhow::Result<(Universe, MpiComm)> {
    // The forward pass, which gathers embeddings, runs on a thread of the compute pool.
    let Some((universe, threading)) = mpi::initialize_with_threading(Threading::Serialized) else {
        bail!("MPI was already initialized in this process");
    };
    if !matches!(threading, Threading::Serialized | Threading::Multiple) {
        bail!(
            "this MPI library offers only {threading:?} threading, and limoe needs calls from \
             more than one thread (MPI_THREAD_SERIALIZED); use an MPI built with threads"
        );
    }
    let comm = universe.world();
    let (rank, size) = (comm.rank() as usize, comm.size() as usize);
    if (rank, size) != (launch.rank, launch.size) {
        bail!(
            "{} describes rank {} of {}, but MPI sees rank {rank} of {size}: start every rank \
             through the launcher (`mpirun -np N limoe run …`, or `srun limoe run …` inside \
             the allocation), not from a batch script directly",
            launch.launcher,
            launch.rank,
            launch.size
        );
    }
    Ok((universe, MpiComm { comm }))
}

impl Communicator for MpiComm {
    fn rank(&self) -> usize {
        self.comm.rank() as usize
    }

    fn size(&self) -> usize {
        self.comm.size() as usize
    }

    fn all_reduce_sum(&self, values: &mut [f32]) {
        let send = values.to_vec();
        self.comm
            .all_reduce_into(&send[..], values, SystemOperation::sum());
    }

    fn all_reduce_sum_f64(&self, values: &mut [f64]) {
        let send = values.to_vec();
        self.comm
            .all_reduce_into(&send[..], values, SystemOperation::sum());
    }

    fn all_gather(&self, send: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0; send.len() * self.size()];
        self.comm.all_gather_into(send, &mut out[..]);
        out
    }

    fn all_gather_bytes(&self, send: &[u8]) -> Vec<u8> {
        let mut out = vec![0; send.len() * self.size()];
        self.comm.all_gather_into(send, &mut out[..]);
        out
    }

    fn all_to_all(&self, send: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0; send.len()];
        self.comm.all_to_all_into(send, &mut out[..]);
        out
    }

    fn broadcast_bytes(&self, bytes: &mut Vec<u8>, root: usize) {
        let root = self.comm.process_at_rank(root as i32);
        let mut len = bytes.len() as u64;
        root.broadcast_into(&mut len);
        bytes.resize(len as usize, 0);
        root.broadcast_into(&mut bytes[..]);
    }

    fn barrier(&self) {
        let mut request = self.comm.immediate_barrier();
        loop {
            match request.test() {
                Ok(_) => return,
                Err(pending) => {
                    request = pending;
                    std::thread::sleep(BARRIER_POLL);
                }
            }
        }
    }

    fn split(&self, color: u32) -> Box<dyn Communicator> {
        let color = Color::with_value(i32::try_from(color).unwrap_or(i32::MAX));
        match self.comm.split_by_color(color) {
            Some(comm) => Box::new(MpiComm { comm }),
            // Only the undefined color yields no communicator, and it is never passed.
            None => self.abort(70),
        }
    }

    fn abort(&self, code: i32) -> ! {
        self.comm.abort(code)
    }
}
