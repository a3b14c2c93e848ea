//! Collective communication between the processes of one training job, one process per
//! device, started by `mpirun` or `srun`. Training calls a [`Communicator`]; [`World::init`]
//! gives the world of one process for a plain launch and, with the `mpi` feature, joins the
//! job a launcher started.

mod agree;
mod launch;
#[cfg(feature = "mpi")]
mod mpi_world;
mod solo;
mod world;

pub use agree::agree;
pub use launch::{Launch, launched};
pub use solo::Solo;
pub use world::World;

/// The collectives training needs. Every rank of a communicator makes the same calls in the
/// same order, with buffers of matching sizes (the calls that say so). Calls may come from
/// any thread (the forward pass runs on the compute pool), one at a time.
pub trait Communicator: Send + Sync {
    /// This process's index, `0..size()`.
    fn rank(&self) -> usize;

    /// How many processes take part.
    fn size(&self) -> usize;

    /// Replaces `values` by their element-wise sum over the ranks (same length everywhere).
    fn all_reduce_sum(&self, values: &mut [f32]);

    /// [`Communicator::all_reduce_sum`] in f64, for metrics and norms.
    fn all_reduce_sum_f64(&self, values: &mut [f64]);

    /// Every rank's `send` (the same length everywhere), concatenated in rank order.
    fn all_gather(&self, send: &[f32]) -> Vec<f32>;

    /// [`Communicator::all_gather`] of bytes, e.g. to compare what the ranks computed.
    fn all_gather_bytes(&self, send: &[u8]) -> Vec<u8>;

    /// `send` is `size()` equal chunks, chunk `r` for rank `r`; the result is the chunk each
    /// rank sent to this one, in rank order.
    fn all_to_all(&self, send: &[f32]) -> Vec<f32>;

    /// Makes `bytes` on every rank equal to the `root` rank's (of any length).
    fn broadcast_bytes(&self, bytes: &mut Vec<u8>, root: usize);

    /// Returns once every rank has called it. Waiting ranks sleep instead of spinning: one
    /// may wait for minutes while rank 0 alone ingests data on the same cores.
    fn barrier(&self);

    /// The ranks that pass the same `color`, as a communicator of their own (ranks in the
    /// order of this one's).
    fn split(&self, color: u32) -> Box<dyn Communicator>;

    /// Ends every process of the job with exit status `code`.
    fn abort(&self, code: i32) -> !;
}
