//! Choosing the device a model runs on.

use candle_core::{Device, Result};
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
