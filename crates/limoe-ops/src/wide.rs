//! Loop bodies compiled for AVX2 + FMA where the CPU has them, chosen at run time.

/// A loop body compiled for AVX2 + FMA where the CPU has them (the build targets baseline
/// x86-64, whose loops are 4 floats wide and whose reductions stay scalar).
///
/// A trait rather than a closure: a closure is compiled where it is written, without the
/// features, and LLVM does not always inline it into the AVX2 function (measured: the GELU
/// and layer-norm loops ran as 4-wide SSE). `run` and everything it calls must be
/// `#[inline(always)]` or small std iterator code.
pub(crate) trait Wide {
    /// What the loop returns.
    type Output;
    /// The loop (mark it `#[inline(always)]`).
    fn run(self) -> Self::Output;
}

/// Whether this CPU runs the AVX2 + FMA versions of the loops.
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx2() -> bool {
    use std::sync::OnceLock;
    static AVX2: OnceLock<bool> = OnceLock::new();
    *AVX2.get_or_init(|| {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    })
}

/// Runs `work`, compiled for AVX2 + FMA where the CPU has them.
#[inline]
pub(crate) fn wide<W: Wide>(work: W) -> W::Output {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        #[target_feature(enable = "avx2,fma")]
        fn avx2<W: Wide>(work: W) -> W::Output {
            work.run()
        }
        // SAFETY: the CPU has the features the function is compiled for (checked above).
        return unsafe { avx2(work) };
    }
    work.run()
}
