//! Retention: keep the newest checkpoints and the best one by a metric, delete the rest.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::{Checkpoint, PREFIX, TMP_PREFIX, list};

pub use limoe_core::spec::{BestBy, Goal};

/// What [`retain`] keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retention {
    /// The newest checkpoints to keep.
    pub keep_last: usize,
    /// Also keep the best checkpoint by this metric.
    pub best: Option<BestBy>,
}

/// The best complete checkpoint under `root` by `by` (the earliest among equals); checkpoints
/// without the metric are not candidates.
pub fn best(root: &Path, by: &BestBy) -> anyhow::Result<Option<Checkpoint>> {
    Ok(pick_best(list(root)?, by))
}

fn pick_best(checkpoints: Vec<Checkpoint>, by: &BestBy) -> Option<Checkpoint> {
    let mut best: Option<(f64, Checkpoint)> = None;
    for c in checkpoints {
        let Some(&value) = c.state.metrics.get(&by.metric) else {
            continue;
        };
        let better = match (&best, by.goal) {
            (None, _) => true,
            (Some((b, _)), Goal::Lower) => value < *b,
            (Some((b, _)), Goal::Higher) => value > *b,
        };
        if better {
            best = Some((value, c));
        }
    }
    best.map(|(_, c)| c)
}

/// Deletes every checkpoint under `root` except the newest `keep_last` and the best, and the
/// debris of killed saves (temporary directories, `step-N` directories that are not complete
/// checkpoints). Returns the deleted directories. Only one process may save into `root`.
pub fn retain(root: &Path, retention: &Retention) -> anyhow::Result<Vec<PathBuf>> {
    let complete = list(root)?;
    let mut keep: Vec<PathBuf> = complete
        .iter()
        .rev()
        .take(retention.keep_last)
        .map(|c| c.path.clone())
        .collect();
    if let Some(by) = &retention.best
        && let Some(best) = pick_best(complete, by)
    {
        keep.push(best.path);
    }
    let mut removed = Vec::new();
    let entries = match std::fs::read_dir(root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", root.display())),
    };
    for entry in entries {
        let path = entry?.path();
        let ours = path.is_dir()
            && path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(PREFIX) || n.starts_with(TMP_PREFIX));
        if ours && !keep.contains(&path) {
            std::fs::remove_dir_all(&path)
                .with_context(|| format!("cannot delete {}", path.display()))?;
            removed.push(path);
        }
    }
    removed.sort();
    Ok(removed)
}
