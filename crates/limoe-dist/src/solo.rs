//! The world of one process: every collective is the identity.

use crate::Communicator;

/// A communicator of one rank: what a plain `limoe run` trains with.
#[derive(Clone, Copy, Debug, Default)]
pub struct Solo;

impl Communicator for Solo {
    fn rank(&self) -> usize {
        0
    }

    fn size(&self) -> usize {
        1
    }

    fn all_reduce_sum(&self, _values: &mut [f32]) {}

    fn all_reduce_sum_f64(&self, _values: &mut [f64]) {}

    fn all_gather(&self, send: &[f32]) -> Vec<f32> {
        send.to_vec()
    }

    fn all_gather_bytes(&self, send: &[u8]) -> Vec<u8> {
        send.to_vec()
    }

    fn all_to_all(&self, send: &[f32]) -> Vec<f32> {
        send.to_vec()
    }

    fn broadcast_bytes(&self, _bytes: &mut Vec<u8>, _root: usize) {}

    fn barrier(&self) {}

    fn split(&self, _color: u32) -> Box<dyn Communicator> {
        Box::new(Solo)
    }

    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
}
