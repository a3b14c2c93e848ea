//! `limoe verify RUN`: re-hashes every file that the manifests of a run's (or a sweep's)
//! stage outputs list, to find what changed on disk since the stages wrote it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use limoe_core::runner::{Manifest, Outcome, RunReport};
use limoe_core::sweep::SweepRecord;

use crate::load::find_run;

/// `limoe verify`.
pub fn verify(runs_dir: &Path, run: &Path) -> anyhow::Result<ExitCode> {
    let record_dir = find_run(runs_dir, run)?;
    let outputs = outputs(&record_dir)?;
    let mut failed = 0;
    for dir in &outputs {
        match Manifest::verify(dir) {
            Ok(verified) if verified.changed.is_empty() => {
                println!("ok       {} ({} files)", dir.display(), verified.files);
            }
            Ok(verified) => {
                failed += 1;
                println!(
                    "CHANGED  {} ({} of {} files)",
                    dir.display(),
                    verified.changed.len(),
                    verified.files
                );
                for line in &verified.changed {
                    println!("           {line}");
                }
            }
            Err(e) => {
                failed += 1;
                println!("DAMAGED  {}: {e:#}", dir.display());
            }
        }
    }
    if failed == 0 {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "error: {failed} of {} outputs differ from their manifests; rerun those stages \
         (`limoe run SPEC --force STAGE`)",
        outputs.len()
    );
    Ok(ExitCode::FAILURE)
}

/// The complete stage outputs the run (or every trial of the sweep) recorded, each once.
fn outputs(record_dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if SweepRecord::path(record_dir).is_file() {
        let record = SweepRecord::read(record_dir)?;
        let dirs: BTreeSet<PathBuf> = (record.trials.iter())
            .flat_map(|trial| trial.stages.iter().map(|stage| stage.dir.clone()))
            .filter(|dir| dir.is_dir())
            .collect();
        return Ok(dirs.into_iter().collect());
    }
    let report = RunReport::read(record_dir)?;
    Ok((report.stages.into_iter())
        .filter(|(_, _, outcome)| !matches!(outcome, Outcome::Failed { .. }))
        .map(|(_, dir, _)| dir)
        .collect())
}
