//! Checkpoints: `<root>/step-<8-digit step>/` holding `model.safetensors` (the parameters by
//! name), `optimizer.safetensors` (AdamW's moments as `m.<name>` / `v.<name>`) and
//! `state.json` ([`CheckpointState`]).
//!
//! A checkpoint is written into `<root>/.tmp-step-<step>/`, `state.json` last, and the
//! directory is then renamed into place; a directory without a readable `state.json` is never
//! a checkpoint, so a killed save is ignored by [`latest`] and removed by [`retain`].
//! Tensors are saved from and loaded to the CPU as f32, whatever device they live on.
//! `state.json` records the SHA-256 of both tensor files, checked before anything is loaded,
//! so a file changed on disk (a flipped bit, a truncated copy) is an error naming it.
//! Under expert parallelism a rank holds a share of each expert tensor; checkpoints store the
//! whole tensors, by global expert index, so that they load at any placement and world size.

mod consolidate;
mod retain;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use candle_core::{DType, Device, Tensor, Var};
use limoe_core::files::{hash_file, write_atomic};
use serde::{Deserialize, Serialize};

use limoe_model::moe::ExpertGroup;

use crate::optim::AdamW;

pub use consolidate::{SOURCE_KEY, STEP_KEY, consolidate};
pub use retain::{BestBy, Goal, Retention, best, retain};

/// File of the parameters inside a checkpoint directory.
pub const MODEL_FILE: &str = "model.safetensors";
/// File of the optimiser's moments inside a checkpoint directory.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// File of the [`CheckpointState`], written last.
pub const STATE_FILE: &str = "state.json";

const PREFIX: &str = "step-";
const TMP_PREFIX: &str = ".tmp-step-";

/// What `state.json` holds besides the tensors.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CheckpointState {
    /// The training step the checkpoint was taken after.
    pub step: u64,
    /// AdamW's update count (bias corrections).
    pub optimizer_step: u64,
    /// Finite metrics by name, for choosing the best checkpoint.
    pub metrics: BTreeMap<String, f64>,
    /// Whatever else the loop needs to resume: loader position, RNG states, spec hash.
    pub extra: serde_json::Value,
    /// Hex SHA-256 of each tensor file, by file name (empty in checkpoints written before
    /// files were hashed, which load unchecked).
    #[serde(default)]
    pub files: BTreeMap<String, String>,
}

/// A complete checkpoint on disk.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    /// Its step.
    pub step: u64,
    /// Its directory.
    pub path: PathBuf,
    /// Its `state.json`.
    pub state: CheckpointState,
}

/// The directory name of the checkpoint of `step`.
pub fn dir_name(step: u64) -> String {
    format!("{PREFIX}{step:08}")
}

/// The whole tensors of `params` and of `optimizer`'s moments: their own, or with an expert
/// `group` gathered from its ranks (a collective: every rank of the group calls it).
pub fn whole_state(
    params: &[(String, Var)],
    optimizer: &AdamW,
    group: Option<&ExpertGroup>,
) -> anyhow::Result<[Vec<(String, Tensor)>; 2]> {
    let whole = |tensors: Vec<(String, &Var)>| -> anyhow::Result<Vec<(String, Tensor)>> {
        tensors
            .into_iter()
            .map(|(name, var)| {
                let tensor = match group {
                    Some(group) => group.whole(&name, var.as_tensor())?,
                    None => var.as_tensor().clone(),
                };
                Ok((name, tensor))
            })
            .collect()
    };
    let named = params.iter().map(|(n, v)| (n.clone(), v)).collect();
    Ok([whole(named)?, whole(optimizer.state_vars())?])
}

/// Writes the checkpoint of `step` under `root` from the [`whole_state`] of the parameters
/// and the optimiser (`optimizer_step` updates), and returns its directory. Replaces an
/// existing checkpoint of the same step; metrics must be finite.
pub fn save(
    root: &Path,
    step: u64,
    [params, moments]: &[Vec<(String, Tensor)>; 2],
    optimizer_step: u64,
    metrics: &BTreeMap<String, f64>,
    extra: &serde_json::Value,
) -> anyhow::Result<PathBuf> {
    if let Some((name, value)) = metrics.iter().find(|(_, v)| !v.is_finite()) {
        bail!("checkpoint of step {step}: metric `{name}` is {value}, not a finite number");
    }
    let tmp = root.join(format!("{TMP_PREFIX}{step:08}"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)
            .with_context(|| format!("cannot remove the stale {}", tmp.display()))?;
    }
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    save_tensors(&tmp.join(MODEL_FILE), params)?;
    save_tensors(&tmp.join(OPTIMIZER_FILE), moments)?;
    let mut files = BTreeMap::new();
    for file in [MODEL_FILE, OPTIMIZER_FILE] {
        let path = tmp.join(file);
        let (_, sha256) =
            hash_file(&path).with_context(|| format!("cannot read back {}", path.display()))?;
        files.insert(file.to_owned(), sha256);
    }
    let state = CheckpointState {
        step,
        optimizer_step,
        metrics: metrics.clone(),
        extra: extra.clone(),
        files,
    };
    write_atomic(&tmp.join(STATE_FILE), &serde_json::to_vec_pretty(&state)?)?;
    let dir = root.join(dir_name(step));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("cannot replace {}", dir.display()))?;
    }
    std::fs::rename(&tmp, &dir)
        .with_context(|| format!("cannot move {} to {}", tmp.display(), dir.display()))?;
    File::open(root)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync {}", root.display()))?;
    Ok(dir)
}

/// Every complete checkpoint under `root`, oldest first (none when `root` does not exist).
pub fn list(root: &Path) -> anyhow::Result<Vec<Checkpoint>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", root.display())),
    };
    for entry in entries {
        let path = entry?.path();
        if let Some(checkpoint) = read_complete(&path) {
            out.push(checkpoint);
        }
    }
    out.sort_by_key(|c| c.step);
    Ok(out)
}

/// The newest complete checkpoint under `root`.
pub fn latest(root: &Path) -> anyhow::Result<Option<Checkpoint>> {
    Ok(list(root)?.pop())
}

/// A checkpoint when `path` is a `step-N` directory with both tensor files and a
/// `state.json` that parses and names step N.
fn read_complete(path: &Path) -> Option<Checkpoint> {
    let step: u64 = path
        .file_name()?
        .to_str()?
        .strip_prefix(PREFIX)?
        .parse()
        .ok()?;
    if !path.join(MODEL_FILE).is_file() || !path.join(OPTIMIZER_FILE).is_file() {
        return None;
    }
    let bytes = std::fs::read(path.join(STATE_FILE)).ok()?;
    let state: CheckpointState = serde_json::from_slice(&bytes).ok()?;
    (state.step == step).then(|| Checkpoint {
        step,
        path: path.to_path_buf(),
        state,
    })
}

/// Restores the parameters and the optimiser (moments bitwise, step count) from the
/// checkpoint directory `dir` and returns its state; with an expert `group`, this rank's
/// shares of the stored whole expert tensors. Every tensor name and shape is checked before
/// anything is set: a missing, extra, mis-shaped or non-f32 tensor is an error naming it and
/// the file, and leaves parameters and optimiser untouched.
pub fn load(
    dir: &Path,
    params: &[(String, Var)],
    optimizer: &mut AdamW,
    group: Option<&ExpertGroup>,
) -> anyhow::Result<CheckpointState> {
    let state = read_verified(dir)?;
    let model: Vec<(String, &Var)> = params.iter().map(|(n, v)| (n.clone(), v)).collect();
    let model = read_matching(&dir.join(MODEL_FILE), &model, group, Others::Refused)?;
    let moments = optimizer.state_vars();
    let opt = read_matching(&dir.join(OPTIMIZER_FILE), &moments, group, Others::Refused)?;
    for (var, tensor) in model.iter().chain(&opt) {
        var.set(&tensor.to_device(var.device())?)?;
    }
    optimizer.set_step_count(state.optimizer_step);
    Ok(state)
}

/// Restores only the parameters from the checkpoint directory `dir` (for evaluation), with
/// the same checks as [`load`].
pub fn load_params(dir: &Path, params: &[(String, Var)]) -> anyhow::Result<()> {
    read_verified(dir)?;
    let model: Vec<(String, &Var)> = params.iter().map(|(n, v)| (n.clone(), v)).collect();
    for (var, tensor) in read_matching(&dir.join(MODEL_FILE), &model, None, Others::Refused)? {
        var.set(&tensor.to_device(var.device())?)?;
    }
    Ok(())
}

/// Starts a transfer: sets every parameter of `params` but the classifier's new logits
/// layer ([`limoe_model::CLASSIFIER_LOGITS`]) from the checkpoint directory `dir` of a
/// pre-trained model, which may hold more (a contrastive model's text side and projections);
/// with an expert `group`, this rank's shares. A parameter the checkpoint lacks or shapes
/// otherwise is an error naming it.
pub fn load_shared_params(
    dir: &Path,
    params: &[(String, Var)],
    group: Option<&ExpertGroup>,
) -> anyhow::Result<()> {
    read_verified(dir)?;
    let shared: Vec<(String, &Var)> = (params.iter())
        .filter(|(name, _)| !limoe_model::is_classifier_logits(name))
        .map(|(n, v)| (n.clone(), v))
        .collect();
    let file = dir.join(MODEL_FILE);
    for (var, tensor) in read_matching(&file, &shared, group, Others::Ignored)? {
        var.set(&tensor.to_device(var.device())?)?;
    }
    Ok(())
}

/// What [`read_matching`] makes of tensors the variables do not name.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Others {
    /// An error: the file is not this model's.
    Refused,
    /// Left unread: the file is a larger model's, of which this one reads a part.
    Ignored,
}

/// The checkpoint state of `dir`, after checking each tensor file against the hash it
/// records.
fn read_verified(dir: &Path) -> anyhow::Result<CheckpointState> {
    let state_path = dir.join(STATE_FILE);
    let bytes = std::fs::read(&state_path)
        .with_context(|| format!("cannot read {}", state_path.display()))?;
    let state: CheckpointState = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a checkpoint state", state_path.display()))?;
    for (file, expected) in &state.files {
        let path = dir.join(file);
        let (bytes, found) =
            hash_file(&path).with_context(|| format!("cannot read {}", path.display()))?;
        if &found != expected {
            bail!(
                "{} ({bytes} bytes) does not match the SHA-256 its {STATE_FILE} records: it \
                 changed after it was saved (found {found}, expected {expected})",
                path.display()
            );
        }
    }
    Ok(state)
}

/// Writes `tensors` to `path` as f32 on the CPU and syncs the file.
fn save_tensors(path: &Path, tensors: &[(String, Tensor)]) -> anyhow::Result<()> {
    let mut map = HashMap::new();
    for (name, tensor) in tensors {
        let tensor = tensor.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
        map.insert(name.clone(), tensor);
    }
    candle_core::safetensors::save(&map, path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    File::open(path)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("cannot sync {}", path.display()))
}

/// The first value of `tensor` that is NaN or infinite, with its flat index.
fn first_nonfinite(tensor: &Tensor) -> anyhow::Result<Option<(usize, f32)>> {
    let values: Vec<f32> = tensor.flatten_all()?.to_vec1()?;
    Ok(values.into_iter().enumerate().find(|(_, v)| !v.is_finite()))
}

/// The tensors of `path` paired with the variables they restore, after checking that the
/// file has exactly the expected names, each f32 with the variable's whole shape and finite
/// values; with an expert `group`, each variable's share of its tensor.
fn read_matching<'a>(
    path: &Path,
    expected: &[(String, &'a Var)],
    group: Option<&ExpertGroup>,
    others: Others,
) -> anyhow::Result<Vec<(&'a Var, Tensor)>> {
    let mut loaded = candle_core::safetensors::load(path, &Device::Cpu)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut problems = Vec::new();
    let mut pairs = Vec::with_capacity(expected.len());
    for (name, var) in expected {
        let whole = match group {
            Some(group) => group.whole_dims(name, var.dims()),
            None => var.dims().to_vec(),
        };
        match loaded.remove(name) {
            None => problems.push(format!("tensor `{name}` is missing")),
            Some(t) if t.dtype() != DType::F32 => {
                problems.push(format!("tensor `{name}` is {:?}, expected f32", t.dtype()));
            }
            Some(t) if t.dims() != whole => problems.push(format!(
                "tensor `{name}` has shape {:?}, the model expects {whole:?}",
                t.dims(),
            )),
            Some(t) => match first_nonfinite(&t)? {
                Some((index, value)) => problems.push(format!(
                    "tensor `{name}` holds the non-finite value {value} at flat index {index}"
                )),
                None => pairs.push((
                    *var,
                    match group {
                        Some(group) => group.share(name, &t)?,
                        None => t,
                    },
                )),
            },
        }
    }
    let mut extra: Vec<String> = match others {
        Others::Refused => loaded.into_keys().collect(),
        Others::Ignored => Vec::new(),
    };
    extra.sort();
    problems.extend(
        extra
            .into_iter()
            .map(|n| format!("tensor `{n}` is not in the model")),
    );
    if !problems.is_empty() {
        bail!("{}: {}", path.display(), problems.join("; "));
    }
    Ok(pairs)
}
