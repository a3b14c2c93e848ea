//! Pointer-level matrix products: strided matmuls through the `gemm` crate (the one candle's
//! CPU backend uses), outputs written without zeroing, and output pointers shared by tasks.

use crate::real::Real;

/// Multiply-adds above which a matmul runs on every thread.
const PARALLEL_MIN: usize = 1 << 18;

/// `dst (+)= lhs @ rhs` for row-major strided operands `(pointer, row stride, column stride)`
/// of sizes m x k and k x n.
///
/// # Safety
/// Every operand must lie inside its buffer with the given strides; `dst` must not alias the
/// others.
pub(crate) unsafe fn gemm<T: Real>(
    (m, n, k): (usize, usize, usize),
    dst: (*mut T, usize, usize),
    accumulate: bool,
    lhs: (*const T, usize, usize),
    rhs: (*const T, usize, usize),
    beta: T,
    parallel: bool,
) {
    let parallelism = if parallel && m * n * k >= PARALLEL_MIN {
        gemm::Parallelism::Rayon(rayon::current_num_threads())
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: upheld by the caller; gemm reads lhs and rhs and writes dst only.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.0,
            dst.2 as isize,
            dst.1 as isize,
            accumulate,
            lhs.0,
            lhs.2 as isize,
            lhs.1 as isize,
            rhs.0,
            rhs.2 as isize,
            rhs.1 as isize,
            T::one(),
            beta,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// A buffer of `len` values written by `write` (given its start) without zeroing it first.
///
/// # Safety
/// `write` must write every one of the `len` values and read none before writing it
/// (`gemm` without accumulation: with `read_dst` false it never reads its output).
pub(crate) unsafe fn written<T>(len: usize, write: impl FnOnce(*mut T)) -> Vec<T> {
    let mut out = Vec::with_capacity(len);
    write(out.as_mut_ptr());
    // SAFETY: `write` initialised all `len` values (the caller's promise); the capacity is len.
    unsafe { out.set_len(len) };
    out
}

/// A raw pointer that parallel tasks share; each task writes a disjoint part.
#[derive(Clone, Copy)]
pub(crate) struct Shared<T>(pub *mut T);
// SAFETY: the tasks that receive the pointer write disjoint elements (their users promise
// it) and the buffer outlives the parallel loop.
unsafe impl<T> Send for Shared<T> {}
unsafe impl<T> Sync for Shared<T> {}

impl<T> Shared<T> {
    /// The pointer `offset` elements on (a method, so closures capture the whole `Shared`).
    ///
    /// # Safety
    /// As for `pointer::add`: the offset must stay inside the buffer.
    pub(crate) unsafe fn at(&self, offset: usize) -> *mut T {
        // SAFETY: upheld by the caller.
        unsafe { self.0.add(offset) }
    }
}
