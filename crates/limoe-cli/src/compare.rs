//! `limoe compare RUN...`: the metrics of several runs side by side, named and grouped as
//! in their reports.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use limoe_analysis::RunDirs;
use limoe_analysis::report::{MetricTable, read_run_summary};
use limoe_core::Registry;
use limoe_core::sweep::{SweepRecord, TRIALS_DIR};

use crate::load::{find_run, load};

/// How `limoe compare` prints its table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns.
    Text,
    /// Markdown tables.
    Markdown,
    /// The table as JSON.
    Json,
}

impl Format {
    /// The format the `--json` and `--markdown` flags ask for (at most one is set).
    pub fn of_flags(json: bool, markdown: bool) -> Format {
        match (json, markdown) {
            (true, _) => Format::Json,
            (_, true) => Format::Markdown,
            _ => Format::Text,
        }
    }
}

/// Prints the metric table of `runs` (each a run directory or an experiment name under
/// `runs_dir`), one column per run, in `format`.
pub fn compare(
    registry: &Registry,
    runs_dir: &Path,
    runs: &[PathBuf],
    format: Format,
) -> anyhow::Result<ExitCode> {
    let mut columns = Vec::with_capacity(runs.len());
    for run in runs {
        let record_dir = find_run(runs_dir, run)?;
        if SweepRecord::path(&record_dir).is_file() {
            bail!(
                "{} is a sweep: compare its trials by naming them ({}/{TRIALS_DIR}/<id>), or \
                 see the settings compared in its report (`limoe report {}`)",
                run.display(),
                record_dir.display(),
                run.display()
            );
        }
        let dirs = RunDirs::from_record(&record_dir)?;
        let loaded = match load(registry, &dirs.spec_file, &[]) {
            Ok(loaded) => loaded,
            Err(code) => return Ok(code),
        };
        let name = run.display().to_string();
        let threshold = loaded.spec.analysis.dead_expert_threshold;
        let summary = read_run_summary(&name, &dirs, threshold)
            .with_context(|| format!("reading the numbers of {}", record_dir.display()))?;
        columns.push((name, summary.metrics()));
    }
    let table = MetricTable::new(&columns);
    let text = match format {
        Format::Text => table.text(),
        Format::Markdown => table.markdown(),
        Format::Json => table.json()?,
    };
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}
