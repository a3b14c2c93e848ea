//! Joining the job: the world of one process, or the launcher's MPI world.

use crate::{Communicator, Launch, Solo, launched};

/// The communicator of every rank of the job, kept alive for the process's lifetime (with
/// MPI, dropping it finalizes MPI).
pub struct World {
    comm: Box<dyn Communicator>,
    /// Declared after `comm`, so that communicators are freed before MPI is finalized.
    #[cfg(feature = "mpi")]
    _universe: Option<mpi::environment::Universe>,
}

impl World {
    /// Whether this build can join a job of several ranks (it has the `mpi` feature).
    pub const JOINS_JOBS: bool = cfg!(feature = "mpi");

    /// The world of this process alone, whatever the environment says.
    pub fn solo() -> World {
        World {
            comm: Box::new(Solo),
            #[cfg(feature = "mpi")]
            _universe: None,
        }
    }

    /// Joins the job a launcher (`mpirun`, `srun`) started this process in, or a world of
    /// one when none did; an error when a launcher started several ranks and this build
    /// cannot join them (built without the `mpi` feature), since every rank would then train
    /// alone and write the same run store.
    pub fn init() -> anyhow::Result<World> {
        match launched(|key| std::env::var(key).ok())? {
            None => Ok(World::solo()),
            Some(launch) => join(&launch),
        }
    }

    /// The communicator over every rank.
    pub fn comm(&self) -> &dyn Communicator {
        self.comm.as_ref()
    }
}

#[cfg(not(feature = "mpi"))]
fn join(launch: &Launch) -> anyhow::Result<World> {
    anyhow::bail!(
        "{} started this process as rank {} of {}, but this limoe was built without MPI; \
         rebuild it with `cargo build --release -p limoe-cli --features mpi` (needs Open MPI: \
         `apt-get install libopenmpi-dev openmpi-bin libclang-dev`), or run it without a \
         launcher",
        launch.launcher,
        launch.rank,
        launch.size
    )
}

#[cfg(feature = "mpi")]
fn join(launch: &Launch) -> anyhow::Result<World> {
    let (universe, comm) = crate::mpi_world::join(launch)?;
    Ok(World {
        comm: Box::new(comm),
        _universe: Some(universe),
    })
}
