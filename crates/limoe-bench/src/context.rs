//! The machine a benchmark ran on, printed first, so that ratios measured on different
//! machines can be compared: cores, load, the SIMD the kernels can use, the matmul kernel
//! candle's CPU backend runs, and the f32 matmul rate it reaches.

use candle_core::Device;

use crate::model::matmul_rate;

/// The line `limoe bench` starts with.
pub(crate) fn context() -> anyhow::Result<String> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| load_averages(&text))
        .map_or("unknown".to_owned(), |[one, five, fifteen]| {
            format!("{one:.2} / {five:.2} / {fifteen:.2} (1 / 5 / 15 min)")
        });
    let matmul = matmul_rate(&Device::Cpu)? / 1e9;
    Ok(format!(
        "machine: {cores} cores, load {load}, SIMD {}, matmul kernel {}, f32 1024^3 matmul \
         {matmul:.1} GFLOP/s",
        simd(),
        gemm_kernel()
    ))
}

/// The 1, 5 and 15 minute load averages of a `/proc/loadavg` text.
fn load_averages(text: &str) -> Option<[f64; 3]> {
    let mut fields = text.split_whitespace().map(str::parse::<f64>);
    Some([
        fields.next()?.ok()?,
        fields.next()?.ok()?,
        fields.next()?.ok()?,
    ])
}

/// The vector extensions of this CPU that gemm's and limoe-ops' kernels choose among at run
/// time.
fn simd() -> String {
    #[cfg(target_arch = "x86_64")]
    {
        let found: Vec<&str> = [
            ("avx512f", std::arch::is_x86_feature_detected!("avx512f")),
            ("avx2", std::arch::is_x86_feature_detected!("avx2")),
            ("fma", std::arch::is_x86_feature_detected!("fma")),
        ]
        .into_iter()
        .filter_map(|(name, present)| present.then_some(name))
        .collect();
        if found.is_empty() {
            "none of avx512f, avx2, fma".to_owned()
        } else {
            found.join("+")
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        std::env::consts::ARCH.to_owned()
    }
}

/// The f32 microkernels gemm 0.19 (candle's CPU matmul) picks at its first call: its AVX-512
/// ones where the CPU has avx512f (crates/limoe-ops/Cargo.toml turns on its `x86-v4`
/// feature), else FMA (AVX2), else scalar, as `gemm-common`'s `init_gemm_fn` decides.
fn gemm_kernel() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            "gemm 0.19 avx512f (x86-v4)"
        } else if std::arch::is_x86_feature_detected!("fma") {
            "gemm 0.19 fma (x86-v3)"
        } else {
            "gemm 0.19 scalar"
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        "gemm 0.19 neon"
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        "gemm 0.19 scalar"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_averages_come_from_the_first_three_fields() {
        assert_eq!(
            load_averages("0.52 1.07 2.00 3/412 9817\n"),
            Some([0.52, 1.07, 2.0])
        );
        assert_eq!(load_averages("0.52 x 2.00"), None);
        assert_eq!(load_averages(""), None);
    }

    #[test]
    fn the_context_names_cores_load_and_matmul_rate() {
        let line = context().unwrap();
        assert!(line.starts_with("machine: "), "{line}");
        assert!(line.contains(" cores, load "), "{line}");
        assert!(line.contains("GFLOP/s"), "{line}");
        assert!(line.contains("matmul kernel gemm 0.19 "), "{line}");
    }
}
