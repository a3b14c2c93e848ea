//! Choosing the device a model runs on.

use candle_core::{DType, Device, Result};
use limoe_core::spec;

/// Opens the device a spec asks for (`train.device`), or says why it cannot be used.
pub fn open(kind: spec::Device) -> Result<Device> {
    match kind {
        spec::Device::Cpu => Ok(Device::Cpu),
        spec::Device::Cuda if !cfg!(feature = "cuda") => candle_core::bail!(
            "the spec asks for `device: cuda` but this limoe was built without CUDA; rebuild \
             with `cargo build --release --features cuda` (needs nvcc) or set `device: cpu`"
        ),
        spec::Device::Cuda => Device::new_cuda(0).map_err(|e| {
            candle_core::Error::Msg(format!(
                "the spec asks for `device: cuda` but no CUDA GPU could be opened ({e}); \
                 check nvidia-smi or set `device: cpu`"
            ))
        }),
    }
}

/// The dtype a spec's `train.precision` computes in ([`crate::Model::in_precision`]).
pub fn compute_dtype(precision: spec::Precision) -> DType {
    match precision {
        spec::Precision::F32 => DType::F32,
        spec::Precision::Bf16 => DType::BF16,
    }
}

/// What to tell a user who asks for bf16 on the CPU, where it runs but is no faster: candle
/// widens every bf16 matmul to f32 there, and limoe's fused kernels take f32 only.
pub fn precision_note(precision: spec::Precision, device: spec::Device) -> Option<&'static str> {
    (precision == spec::Precision::Bf16 && device == spec::Device::Cpu).then_some(
        "train.precision: bf16 on the CPU computes in bf16 through candle's generic ops, \
         slower than f32 (candle widens bf16 matmuls to f32 there and limoe's fused CPU \
         kernels take f32 only); it is for checking a GPU run's numerics, use f32 to train on \
         the CPU",
    )
}
