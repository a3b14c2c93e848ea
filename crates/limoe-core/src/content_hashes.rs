//! SHA-256 of input files for cache keys, remembered by (path, size, mtime, inode) so that an
//! unchanged terabyte of foreign Parquet is hashed once, not on every plan (as DVC's state
//! database does). A file whose size, mtime or inode changed is hashed again.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::files::{hash_file, write_atomic};

/// What identifies one version of a file without reading it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Stamp {
    bytes: u64,
    mtime_ns: i128,
    inode: u64,
}

impl Stamp {
    fn of(path: &Path) -> std::io::Result<Stamp> {
        let meta = std::fs::metadata(path)?;
        Ok(Stamp {
            bytes: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            inode: meta.ino(),
        })
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Entry {
    stamp: Stamp,
    sha256: String,
}

/// A file's size and content hash, as a cache key covers it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileContent {
    /// The path as given.
    pub path: PathBuf,
    /// Size in bytes.
    pub bytes: u64,
    /// Hex SHA-256 of the content.
    pub sha256: String,
}

/// The remembered hashes, loaded from and saved to one JSON file.
pub struct ContentHashes {
    file: Option<PathBuf>,
    entries: BTreeMap<PathBuf, Entry>,
    changed: bool,
}

impl ContentHashes {
    /// The per-user store, `$XDG_CACHE_HOME/limoe/content-hashes.json` (or under
    /// `~/.cache`); without either variable nothing is remembered.
    pub fn user() -> ContentHashes {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")));
        match base {
            Some(base) => ContentHashes::at(base.join("limoe").join("content-hashes.json")),
            None => ContentHashes {
                file: None,
                entries: BTreeMap::new(),
                changed: false,
            },
        }
    }

    /// The store in `file`; a missing or damaged file starts empty (it is only a cache).
    pub fn at(file: impl Into<PathBuf>) -> ContentHashes {
        let file = file.into();
        let entries = std::fs::read_to_string(&file)
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default();
        ContentHashes {
            file: Some(file),
            entries,
            changed: false,
        }
    }

    /// The size and hash of `path`, read only when its stamp differs from the remembered one.
    pub fn content(&mut self, path: &Path) -> anyhow::Result<FileContent> {
        let absolute = std::path::absolute(path)
            .with_context(|| format!("cannot resolve {}", path.display()))?;
        let stamp =
            Stamp::of(&absolute).with_context(|| format!("cannot read {}", path.display()))?;
        let sha256 = match self.entries.get(&absolute) {
            Some(entry) if entry.stamp == stamp => entry.sha256.clone(),
            _ => {
                let (_, sha256) = hash_file(&absolute)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                self.entries.insert(
                    absolute,
                    Entry {
                        stamp: stamp.clone(),
                        sha256: sha256.clone(),
                    },
                );
                self.changed = true;
                sha256
            }
        };
        Ok(FileContent {
            path: path.to_path_buf(),
            bytes: stamp.bytes,
            sha256,
        })
    }

    /// Saves what was learnt, dropping entries of files that are gone. A store that cannot
    /// be written is skipped with a warning: the hashes are only a cache.
    pub fn save(mut self) {
        let Some(file) = self.file.take().filter(|_| self.changed) else {
            return;
        };
        self.entries.retain(|path, _| path.is_file());
        let saved = serde_json::to_vec(&self.entries)
            .map_err(anyhow::Error::from)
            .and_then(|bytes| write_atomic(&file, &bytes));
        if let Err(e) = saved {
            tracing::warn!(
                "cannot remember content hashes in {}: {e:#}",
                file.display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remembered_hash_is_reused_until_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("hashes.json");
        let data = dir.path().join("a.parquet");
        std::fs::write(&data, b"abc").unwrap();
        let mut hashes = ContentHashes::at(&store);
        let first = hashes.content(&data).unwrap();
        assert_eq!(first.bytes, 3);
        assert_eq!(first.sha256, crate::files::sha256_hex(b"abc"));
        hashes.save();

        // A forged entry with the file's own stamp proves the store is read, not the file.
        let text = std::fs::read_to_string(&store).unwrap();
        std::fs::write(&store, text.replace(&first.sha256, "remembered")).unwrap();
        let mut hashes = ContentHashes::at(&store);
        assert_eq!(hashes.content(&data).unwrap().sha256, "remembered");

        std::fs::write(&data, b"abcd").unwrap();
        let changed = hashes.content(&data).unwrap();
        assert_eq!(changed.bytes, 4);
        assert_eq!(changed.sha256, crate::files::sha256_hex(b"abcd"));
    }
}
