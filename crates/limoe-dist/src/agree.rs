//! Steps every rank takes together and must come out of together.

use crate::Communicator;

/// Every rank's outcome of a step they all took: this rank's own error, or an error naming
/// the ranks that failed, so that no rank carries on alone when another could not. Every
/// rank calls it; ranks that arrive early sleep until the slowest is done.
pub fn agree<T>(comm: &dyn Communicator, result: anyhow::Result<T>) -> anyhow::Result<T> {
    comm.barrier();
    let failed = comm.all_gather_bytes(&[u8::from(result.is_err())]);
    let value = result?;
    let ranks: Vec<String> = (failed.iter().enumerate())
        .filter(|&(_, &f)| f == 1)
        .map(|(rank, _)| rank.to_string())
        .collect();
    if !ranks.is_empty() {
        anyhow::bail!(
            "rank {} failed (its error is in its own log); this rank stopped with it",
            ranks.join(", rank ")
        );
    }
    Ok(value)
}
