//! Putting a finished report where people look for it (`reports/<experiment>/`).

use std::path::{Path, PathBuf};

use anyhow::Context;
use limoe_core::runner::MANIFEST;

/// Copies the report in `from` (every file but a stage manifest) to `to`, replacing what
/// was there only once the copy is complete: the files go to a temporary sibling first,
/// which is then renamed into place. Subfolders of an old `to` that `from` lacks (e.g. the
/// trial reports of a sweep) are kept.
pub fn publish(from: &Path, to: &Path) -> anyhow::Result<()> {
    let parent = to
        .parent()
        .with_context(|| format!("{} has no parent folder", to.display()))?;
    std::fs::create_dir_all(parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    let name = to
        .file_name()
        .with_context(|| format!("{} has no name", to.display()))?
        .to_string_lossy();
    let staging = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    copy_tree(from, &staging)?;
    if to.is_dir() {
        for entry in
            std::fs::read_dir(to).with_context(|| format!("cannot read {}", to.display()))?
        {
            let entry = entry?;
            let kept = staging.join(entry.file_name());
            if entry.file_type()?.is_dir() && !kept.exists() {
                std::fs::rename(entry.path(), &kept).with_context(|| {
                    format!("cannot move {} into the new report", entry.path().display())
                })?;
            }
        }
        let old = parent.join(format!(".{name}.old-{}", std::process::id()));
        std::fs::rename(to, &old).with_context(|| format!("cannot move {}", to.display()))?;
        std::fs::rename(&staging, to)
            .with_context(|| format!("cannot move the new report to {}", to.display()))?;
        std::fs::remove_dir_all(&old).with_context(|| format!("cannot remove {}", old.display()))
    } else {
        std::fs::rename(&staging, to)
            .with_context(|| format!("cannot move the new report to {}", to.display()))
    }
}

/// Copies the files under `from` to `to`, leaving out stage manifests.
fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    for entry in
        std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))?
    {
        let entry = entry?;
        let target: PathBuf = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if entry.file_name() != MANIFEST {
            std::fs::copy(entry.path(), &target).with_context(|| {
                format!(
                    "cannot copy {} to {}",
                    entry.path().display(),
                    target.display()
                )
            })?;
        }
    }
    Ok(())
}
