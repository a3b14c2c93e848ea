//! Choosing the device a model runs on.

use candle_core::{Device, Result};

/// Where tensors live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    /// The CPU (always available).
    Cpu,
    /// The first CUDA GPU (needs a build with `--features cuda`).
    Cuda,
}

/// Opens the device, or says why it cannot be used.
pub fn open(kind: DeviceKind) -> Result<Device> {
    match kind {
        DeviceKind::Cpu => Ok(Device::Cpu),
        DeviceKind::Cuda if !cfg!(feature = "cuda") => candle_core::bail!(
            "the spec asks for `device: cuda` but this limoe was built without CUDA; rebuild \
             with `cargo build --release --features cuda` (needs nvcc) or set `device: cpu`"
        ),
        DeviceKind::Cuda => Device::new_cuda(0).map_err(|e| {
            candle_core::Error::Msg(format!(
                "the spec asks for `device: cuda` but no CUDA GPU could be opened ({e}); \
                 check nvidia-smi or set `device: cpu`"
            ))
        }),
    }
}
