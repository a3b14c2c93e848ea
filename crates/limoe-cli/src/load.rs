//! Loading what a command names: a spec (its errors printed, and the exit code of an
//! invalid spec), or a run's record directory.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::bail;
use limoe_core::runner::LAST_RUN;
use limoe_core::sweep::SweepRecord;
use limoe_core::{LoadedSpec, Registry, load_spec};

/// Exit code of a spec that failed validation.
pub(crate) const INVALID_SPEC: u8 = 2;

/// Loads a spec, printing its errors; the exit code of an invalid spec on failure.
pub(crate) fn load(
    registry: &Registry,
    spec: &Path,
    sets: &[String],
) -> Result<LoadedSpec, ExitCode> {
    load_spec(spec, sets, registry).map_err(|errors| {
        eprintln!("{errors}");
        ExitCode::from(INVALID_SPEC)
    })
}

/// The run directory `run` names: itself when it holds a run's records, else
/// `<runs>/<run>`.
pub(crate) fn find_run(runs_dir: &Path, run: &Path) -> anyhow::Result<PathBuf> {
    let is_run = |dir: &Path| dir.join(LAST_RUN).is_file() || SweepRecord::path(dir).is_file();
    if is_run(run) {
        return Ok(run.to_owned());
    }
    let under_runs = runs_dir.join(run);
    if is_run(&under_runs) {
        return Ok(under_runs);
    }
    bail!(
        "no run at {} or {} (no last-run.json or sweep.json there): run the spec with `limoe run SPEC` \
         first, or name a directory under {}",
        run.display(),
        under_runs.display(),
        runs_dir.display()
    )
}
