//! One checkpoint's parameters as a single safetensors file, for evaluation or use on one
//! device: no optimiser state, every expert under its global index (checkpoints store them
//! whole at any placement), and the step and source in the file's metadata.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{Context, bail};
use candle_core::{DType, Device};
use limoe_core::files::write_atomic;

use super::{Checkpoint, MODEL_FILE, first_nonfinite, read_verified};

/// Metadata key of the training step the weights are from.
pub const STEP_KEY: &str = "limoe.step";
/// Metadata key of the checkpoint directory the weights were read from.
pub const SOURCE_KEY: &str = "limoe.checkpoint";

/// Writes the parameters of `checkpoint`, after checking its files against their hashes and
/// every tensor for f32 and finite values, to `out` (whole or not at all), with `metadata`
/// besides the step and source. Returns the number of tensors written.
pub fn consolidate(
    checkpoint: &Checkpoint,
    out: &Path,
    metadata: BTreeMap<String, String>,
) -> anyhow::Result<usize> {
    read_verified(&checkpoint.path)?;
    let file = checkpoint.path.join(MODEL_FILE);
    let tensors = candle_core::safetensors::load(&file, &Device::Cpu)
        .with_context(|| format!("cannot read {}", file.display()))?;
    let mut named: Vec<_> = tensors.iter().collect();
    named.sort_by_key(|(name, _)| *name);
    for (name, tensor) in &named {
        if tensor.dtype() != DType::F32 {
            bail!(
                "{}: tensor `{name}` is {:?}, not f32",
                file.display(),
                tensor.dtype()
            );
        }
        if let Some((index, value)) = first_nonfinite(tensor)? {
            bail!(
                "{}: tensor `{name}` holds the non-finite value {value} at flat index {index}",
                file.display()
            );
        }
    }
    let mut info: HashMap<String, String> = metadata.into_iter().collect();
    info.insert(STEP_KEY.to_owned(), checkpoint.step.to_string());
    info.insert(SOURCE_KEY.to_owned(), checkpoint.path.display().to_string());
    let bytes = safetensors::serialize(named, Some(info))
        .with_context(|| format!("cannot encode the tensors of {}", file.display()))?;
    write_atomic(out, &bytes)?;
    Ok(tensors.len())
}
