//! Running work that calls the fused ops on rayon's thread pool.

/// Runs `work` on a thread of rayon's global pool (inline when the caller already is one)
/// and returns its result.
///
/// The fused CPU ops and gemm split their loops with rayon. From a thread outside the pool,
/// each of the hundreds of parallel loops of a training step is injected into the pool while
/// the caller sleeps until it ends: a futex wake-up per loop, and three threads sharing two
/// cores. From a pool thread, a loop starts on the calling thread and the others steal from
/// it, which is faster (`limoe bench model` shows it).
///
/// Keep waits for other threads (a data loader's channel) outside `work`: with a
/// one-thread pool, a loader that needs the pool would wait on the waiting caller.
pub fn on_pool<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| work())
}
