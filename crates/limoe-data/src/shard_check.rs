//! Shards are checked against the size and SHA-256 that `index.json` records the first time
//! a process reads each one, so a same-size corruption (one flipped bit) stops the run naming
//! the shard instead of turning rows silently "undecodable". Once per process: hashing a
//! shard costs about what reading it does, beside the many epochs training reads it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context, bail};
use limoe_core::files::hash_file;

use crate::shards::{INDEX, ShardInfo};

/// Shards (absolute path, recorded hash) this process has found intact.
static CHECKED: Mutex<BTreeSet<(PathBuf, String)>> = Mutex::new(BTreeSet::new());

/// Checks the shard `info` of the dataset in `dir`, unless this process already has.
pub fn check_once(dir: &Path, info: &ShardInfo) -> anyhow::Result<()> {
    let path = std::path::absolute(dir.join(&info.file))
        .with_context(|| format!("cannot resolve shard {}", info.file))?;
    let entry = (path, info.sha256.clone());
    if CHECKED.lock().is_ok_and(|checked| checked.contains(&entry)) {
        return Ok(());
    }
    let path = &entry.0;
    let started = Instant::now();
    let (bytes, sha256) =
        hash_file(path).with_context(|| format!("cannot read shard {}", path.display()))?;
    if bytes != info.bytes || sha256 != info.sha256 {
        bail!(
            "shard {} does not match {}: it has {bytes} bytes and SHA-256 {sha256}, ingest \
             wrote {} bytes with SHA-256 {}; it changed after ingest, so rerun ingest \
             (`limoe run SPEC --force ingest`)",
            path.display(),
            INDEX,
            info.bytes,
            info.sha256
        );
    }
    tracing::debug!(
        "shard {} verified in {:.3}s",
        path.display(),
        started.elapsed().as_secs_f64()
    );
    if let Ok(mut checked) = CHECKED.lock() {
        checked.insert(entry);
    }
    Ok(())
}
