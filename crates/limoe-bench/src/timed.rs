//! A communicator that counts the time spent in its collectives, and in those of the
//! communicators split from it: the communication share of a step.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use limoe_dist::Communicator;

/// The communicator it wraps: the caller's, or one split from it (owned).
enum Inner<'a> {
    Borrowed(&'a dyn Communicator),
    Owned(Box<dyn Communicator>),
}

/// `inner`, timing every collective into a counter it shares with its splits.
pub(crate) struct Timed<'a> {
    inner: Inner<'a>,
    nanos: Arc<AtomicU64>,
}

impl<'a> Timed<'a> {
    /// Times the collectives of `comm`.
    pub(crate) fn new(comm: &'a dyn Communicator) -> Timed<'a> {
        Timed {
            inner: Inner::Borrowed(comm),
            nanos: Arc::default(),
        }
    }

    /// Seconds spent in collectives since the last call, which starts the count again.
    pub(crate) fn take_seconds(&self) -> f64 {
        self.nanos.swap(0, Ordering::Relaxed) as f64 * 1e-9
    }

    fn comm(&self) -> &dyn Communicator {
        match &self.inner {
            Inner::Borrowed(comm) => *comm,
            Inner::Owned(comm) => comm.as_ref(),
        }
    }

    fn timed<T>(&self, collective: impl FnOnce(&dyn Communicator) -> T) -> T {
        let start = Instant::now();
        let result = collective(self.comm());
        let nanos = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(nanos, Ordering::Relaxed);
        result
    }
}

impl Communicator for Timed<'_> {
    fn rank(&self) -> usize {
        self.comm().rank()
    }

    fn size(&self) -> usize {
        self.comm().size()
    }

    fn all_reduce_sum(&self, values: &mut [f32]) {
        self.timed(|c| c.all_reduce_sum(values));
    }

    fn all_reduce_sum_f64(&self, values: &mut [f64]) {
        self.timed(|c| c.all_reduce_sum_f64(values));
    }

    fn all_gather(&self, send: &[f32]) -> Vec<f32> {
        self.timed(|c| c.all_gather(send))
    }

    fn all_gather_bytes(&self, send: &[u8]) -> Vec<u8> {
        self.timed(|c| c.all_gather_bytes(send))
    }

    fn all_to_all(&self, send: &[f32]) -> Vec<f32> {
        self.timed(|c| c.all_to_all(send))
    }

    fn broadcast_bytes(&self, bytes: &mut Vec<u8>, root: usize) {
        self.timed(|c| c.broadcast_bytes(bytes, root));
    }

    fn barrier(&self) {
        self.timed(|c| c.barrier());
    }

    fn split(&self, color: u32) -> Box<dyn Communicator> {
        Box::new(Timed {
            inner: Inner::Owned(self.comm().split(color)),
            nanos: Arc::clone(&self.nanos),
        })
    }

    fn abort(&self, code: i32) -> ! {
        self.comm().abort(code)
    }
}

#[cfg(test)]
mod tests {
    use limoe_dist::Solo;

    use super::*;

    #[test]
    fn collectives_of_splits_count_too() {
        let timed = Timed::new(&Solo);
        let split = timed.split(0);
        assert_eq!(split.all_to_all(&[1.0, 2.0]), [1.0, 2.0]);
        timed.barrier();
        let spent = timed.take_seconds();
        assert!(spent > 0.0, "{spent}");
        assert_eq!(
            timed.take_seconds(),
            0.0,
            "taking the count starts it again"
        );
    }
}
