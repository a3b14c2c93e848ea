//! The float types the kernels run on, with vectorisable approximations of tanh and exp.

use num_traits::Float;

/// The float types the fused ops support.
pub trait Real: Float + candle_core::WithDType + Send + Sync + 'static {
    /// tanh, as a branch-free rational approximation in f32 (a loop of it vectorises; within
    /// a few ulp of the exact value) and libm's `tanh` in f64 (exact, for gradient checks).
    fn fast_tanh(self) -> Self;

    /// e^x, as a range reduction and polynomial in f32 (a loop of it vectorises; within 2 ulp
    /// of the exact value, 0 below e^-87) and libm's `exp` in f64.
    fn fast_exp(self) -> Self;
}

impl Real for f32 {
    #[inline(always)]
    fn fast_tanh(self) -> f32 {
        // Eigen's `generic_fast_tanh_float`: a [13/6] rational approximation on [-c, c],
        // beyond which tanh is +-1 to f32 precision.
        const CLAMP: f32 = 7.905_311;
        const ALPHA: [f32; 7] = [
            4.893_524_6e-3,
            6.372_619_3e-4,
            1.485_722_4e-5,
            5.122_297e-8,
            -8.604_672e-11,
            2.000_188e-13,
            -2.760_768_5e-16,
        ];
        const BETA: [f32; 4] = [4.893_525e-3, 2.268_434_7e-3, 1.185_347_1e-4, 1.198_258_4e-6];
        let x = self.clamp(-CLAMP, CLAMP);
        let x2 = x * x;
        let p = ALPHA.iter().rev().fold(0.0, |acc, &a| acc * x2 + a) * x;
        let q = BETA.iter().rev().fold(0.0, |acc, &b| acc * x2 + b);
        p / q
    }

    #[inline(always)]
    fn fast_exp(self) -> f32 {
        // e^x = 2^k e^r with k = round(x / ln 2), |r| <= ln 2 / 2, and Cephes' expf polynomial
        // for e^r; ln 2 split in two so that x - k ln 2 is exact.
        const LOG2_E: f32 = std::f32::consts::LOG2_E;
        const LN_2_HI: f32 = 0.693_359_4;
        const LN_2_LO: f32 = -2.121_944_4e-4;
        const P: [f32; 6] = [
            1.987_569_1e-4,
            1.398_2e-3,
            8.333_452e-3,
            4.166_579_6e-2,
            1.666_666_5e-1,
            0.5,
        ];
        const LOWEST: f32 = -87.0;
        const HIGHEST: f32 = 88.0;
        let x = self.clamp(LOWEST, HIGHEST);
        let k = (x * LOG2_E + 0.5).floor();
        let r = x - k * LN_2_HI - k * LN_2_LO;
        let poly = P.iter().fold(0.0, |acc, &c| acc * r + c);
        let e_r = poly * r * r + r + 1.0;
        let two_k = f32::from_bits(((k as i32 + 127) as u32) << 23);
        if self < LOWEST { 0.0 } else { e_r * two_k }
    }
}

impl Real for f64 {
    #[inline(always)]
    fn fast_tanh(self) -> f64 {
        self.tanh()
    }

    #[inline(always)]
    fn fast_exp(self) -> f64 {
        self.exp()
    }
}

/// `x` as a `T` (0 where it does not fit).
pub(crate) fn constant<T: Real>(x: f64) -> T {
    T::from(x).unwrap_or_else(T::zero)
}

#[cfg(test)]
mod tests {
    use super::Real;

    #[test]
    fn fast_tanh_is_within_a_few_ulp() {
        let worst = (-40_000..=40_000)
            .map(|i| i as f32 * 2.5e-4)
            .map(|x| (f64::from(x.fast_tanh()) - f64::from(x).tanh()).abs())
            .fold(0.0, f64::max);
        assert!(worst < 5e-7, "fast tanh is off by {worst}");
        assert!((30f32.fast_tanh() - 1.0).abs() < 1e-6);
        assert!((-30f32).fast_tanh() + 1.0 < 1e-6);
    }

    #[test]
    fn fast_exp_is_within_two_ulp() {
        let worst = (-86_999..=87_999)
            .map(|i| i as f32 * 1e-3)
            .map(|x| {
                let exact = f64::from(x).exp();
                (f64::from(x.fast_exp()) - exact).abs() / exact
            })
            .fold(0.0, f64::max);
        assert!(worst < 2.5e-7, "fast exp is off by {worst} (relative)");
        assert_eq!((-1e4f32).fast_exp(), 0.0);
        assert_eq!(f32::NEG_INFINITY.fast_exp(), 0.0);
        assert_eq!(0f32.fast_exp(), 1.0);
    }
}
