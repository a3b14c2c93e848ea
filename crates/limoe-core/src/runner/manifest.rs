//! `manifest.json`: the record that makes a stage's output complete.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::files::{hash_file, list_files, write_atomic};

/// The manifest's file name inside a stage's output directory.
pub const MANIFEST: &str = "manifest.json";

/// The status a manifest of a finished stage carries.
pub const COMPLETE: &str = "complete";

/// What a finished stage produced and from what.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// limoe version that wrote it.
    pub limoe_version: String,
    /// Experiment name.
    pub experiment: String,
    /// Stage id.
    pub stage: String,
    /// Stage kind.
    pub kind: String,
    /// Cache key.
    pub key: String,
    /// The config the key was computed from.
    pub config: serde_json::Value,
    /// Upstream outputs it read.
    pub inputs: Vec<InputRef>,
    /// Start time (RFC 3339, UTC).
    pub started: String,
    /// End time (RFC 3339, UTC).
    pub finished: String,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// `complete`.
    pub status: String,
    /// Every output file with its size and hash.
    pub files: Vec<FileEntry>,
}

/// One upstream output.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct InputRef {
    /// Upstream stage id.
    pub id: String,
    /// Its cache key.
    pub key: String,
    /// Its output directory.
    pub dir: PathBuf,
}

/// One output file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FileEntry {
    /// Path relative to the output directory.
    pub path: PathBuf,
    /// Size in bytes.
    pub bytes: u64,
    /// Hex SHA-256.
    pub sha256: String,
}

/// What re-hashing an output's files found ([`Manifest::verify`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Verified {
    /// Files the manifest lists.
    pub files: usize,
    /// One line per file that is missing or differs from its record.
    pub changed: Vec<String>,
}

impl Manifest {
    /// The manifest of `dir` if it is complete for `key` and its files are all present with
    /// their recorded sizes; `None` for anything else (missing, partial, stale, damaged).
    pub fn read_complete(dir: &Path, key: &str) -> Option<Manifest> {
        let text = std::fs::read_to_string(dir.join(MANIFEST)).ok()?;
        let manifest: Manifest = serde_json::from_str(&text).ok()?;
        let files_intact = manifest.files.iter().all(|f| {
            std::fs::metadata(dir.join(&f.path)).is_ok_and(|m| m.is_file() && m.len() == f.bytes)
        });
        (manifest.status == COMPLETE && manifest.key == key && files_intact).then_some(manifest)
    }

    /// Hashes every file in `dir` (but the manifest) into the file list.
    pub fn collect_files(dir: &Path) -> anyhow::Result<Vec<FileEntry>> {
        list_files(dir)?
            .into_iter()
            .filter(|p| p != Path::new(MANIFEST))
            .map(|path| {
                let (bytes, sha256) = hash_file(&dir.join(&path))?;
                Ok(FileEntry {
                    path,
                    bytes,
                    sha256,
                })
            })
            .collect()
    }

    /// Re-hashes every file the manifest of `dir` lists; an unreadable or damaged manifest
    /// is an error naming it.
    pub fn verify(dir: &Path) -> anyhow::Result<Verified> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let manifest: Manifest = serde_json::from_str(&text)
            .with_context(|| format!("{} is damaged", path.display()))?;
        let changed = (manifest.files.iter())
            .filter_map(|entry| {
                let file = dir.join(&entry.path);
                match hash_file(&file) {
                    Err(e) => Some(format!("{}: cannot read it ({e})", file.display())),
                    Ok((bytes, sha256)) if bytes != entry.bytes || sha256 != entry.sha256 => {
                        Some(format!(
                            "{}: {bytes} bytes with SHA-256 {sha256}, the manifest records \
                             {} bytes with {}",
                            file.display(),
                            entry.bytes,
                            entry.sha256
                        ))
                    }
                    Ok(_) => None,
                }
            })
            .collect();
        Ok(Verified {
            files: manifest.files.len(),
            changed,
        })
    }

    /// Writes the manifest into `dir`, atomically.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        write_atomic(
            &dir.join(MANIFEST),
            serde_json::to_string_pretty(self)?.as_bytes(),
        )
    }
}
