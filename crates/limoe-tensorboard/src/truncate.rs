//! Cutting a run's event files back to a checkpoint's step, so that a resumed run's curves
//! go on as if it had never stopped (the Parquet logs are cut the same way:
//! crates/limoe-train/src/logs/writer.rs).

use std::path::Path;

use anyhow::Context;
use limoe_core::files::write_atomic;
use prost::Message;

use crate::proto::What;
use crate::reader::{event_files, read_file};
use crate::record::frame;

/// Removes from every event file in `dir` the summaries of steps after `step`, rewriting a
/// file atomically when it loses events (a torn last record counts as one); files left
/// with no summary are deleted. A missing `dir` has nothing to cut.
pub fn truncate_after(dir: &Path, step: i64) -> anyhow::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    for file in event_files(dir)? {
        let (events, torn) = read_file(&file)?;
        let summaries = |e: &&crate::proto::Event| matches!(e.what, Some(What::Summary(_)));
        let kept: Vec<_> = (events.iter())
            .filter(|e| !summaries(e) || e.step <= step)
            .collect();
        if !kept.iter().any(summaries) {
            std::fs::remove_file(&file)
                .with_context(|| format!("cannot remove {}", file.display()))?;
        } else if kept.len() < events.len() || torn {
            let bytes: Vec<u8> = kept
                .iter()
                .flat_map(|e| frame(&e.encode_to_vec()))
                .collect();
            write_atomic(&file, &bytes)?;
        }
    }
    Ok(())
}
