//! Row reductions written so that LLVM vectorises them: sum, max, dot product, and a row's
//! mean and inverse standard deviation (the layer norm's statistics).

use crate::real::{Real, constant};

/// Epsilon of the layer norm's variance.
pub const LAYER_NORM_EPS: f64 = 1e-6;

/// Lanes of the partial sums in [`sum`], [`dot`] and [`max`]: one AVX2 register of f32.
const LANES: usize = 8;

/// `x` in blocks of [`LANES`] folded lane-wise into `acc` with `f`, then the lanes and the
/// remainder folded in order: a reduction LLVM can vectorise (a plain fold is a chain of
/// dependent scalar operations, as float addition is not associative).
#[inline(always)]
fn reduce<T: Real>(x: &[T], init: T, f: impl Fn(T, T) -> T) -> T {
    let mut acc = [init; LANES];
    let blocks = x.chunks_exact(LANES);
    let rest = blocks.remainder();
    for block in blocks {
        for (a, &v) in acc.iter_mut().zip(block) {
            *a = f(*a, v);
        }
    }
    let folded = acc.into_iter().fold(init, &f);
    rest.iter().fold(folded, |a, &v| f(a, v))
}

/// The sum of `x`.
#[inline(always)]
pub(crate) fn sum<T: Real>(x: &[T]) -> T {
    reduce(x, T::zero(), |a, b| a + b)
}

/// The largest value of `x` (-inf when empty).
#[inline(always)]
pub(crate) fn max<T: Real>(x: &[T]) -> T {
    reduce(x, T::neg_infinity(), |a, b| if b > a { b } else { a })
}

/// `sum_i a_i b_i`.
#[inline(always)]
pub(crate) fn dot<T: Real>(a: &[T], b: &[T]) -> T {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [T::zero(); LANES];
    let (blocks_a, blocks_b) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (rest_a, rest_b) = (blocks_a.remainder(), blocks_b.remainder());
    for (block_a, block_b) in blocks_a.zip(blocks_b) {
        for ((s, &x), &y) in acc.iter_mut().zip(block_a).zip(block_b) {
            *s += x * y;
        }
    }
    let folded = acc.into_iter().fold(T::zero(), |s, v| s + v);
    rest_a
        .iter()
        .zip(rest_b)
        .fold(folded, |s, (&x, &y)| s + x * y)
}

/// Mean and 1 / sqrt(variance + eps) of a row.
#[inline(always)]
pub(crate) fn moments<T: Real>(x: &[T]) -> (T, T) {
    let n = constant::<T>(x.len() as f64);
    let mean = sum(x) / n;
    let mut centred = [T::zero(); MOMENT_BLOCK];
    let mut squares = T::zero();
    for block in x.chunks(MOMENT_BLOCK) {
        let centred = &mut centred[..block.len()];
        for (c, &v) in centred.iter_mut().zip(block) {
            *c = v - mean;
        }
        squares += dot(centred, centred);
    }
    (
        mean,
        (squares / n + constant(LAYER_NORM_EPS)).sqrt().recip(),
    )
}

/// Values centred at a time in [`moments`] (a stack buffer).
const MOMENT_BLOCK: usize = 64;
