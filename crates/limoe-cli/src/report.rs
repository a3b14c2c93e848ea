//! `limoe report RUN`, and publishing the analyze stage's report after `limoe run`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use limoe_analysis::RunDirs;
use limoe_analysis::report::{INDEX, publish, write_run_report};
use limoe_core::Registry;
use limoe_core::runner::Plan;

use crate::commands::load;

/// Copies the report the plan's `analyze` stage wrote to `<reports>/<experiment>/` and says
/// where it is; does nothing for a pipeline without an analyze stage.
pub fn publish_analysis(plan: &Plan, reports_dir: &Path, experiment: &str) -> anyhow::Result<()> {
    let Some(analyze) = plan.stages.iter().find(|s| s.kind == "analyze") else {
        return Ok(());
    };
    let to = reports_dir.join(experiment);
    publish(&analyze.dir, &to)?;
    println!("report       {}", to.join(INDEX).display());
    Ok(())
}

/// `limoe report RUN`: the report of the run in `RUN` (a run directory such as
/// `runs/tiny`, or an experiment name under the runs directory), drawn from its logs into
/// `<reports>/<experiment>/`.
pub fn report(
    registry: &Registry,
    runs_dir: &Path,
    reports_dir: &Path,
    run: &Path,
) -> anyhow::Result<ExitCode> {
    let record_dir = find_run(runs_dir, run)?;
    let spec_file = record_dir.join("spec.yaml");
    let loaded = match load(registry, &spec_file, &[]) {
        Ok(loaded) => loaded,
        Err(code) => return Ok(code),
    };
    let name = &loaded.spec.name;
    let dirs = RunDirs::from_record(&record_dir)?;
    let staging = tempfile::Builder::new()
        .prefix(".report-")
        .tempdir_in(ensure_dir(reports_dir)?)
        .with_context(|| format!("cannot create a folder in {}", reports_dir.display()))?;
    write_run_report(name, &dirs, &loaded.spec.analysis, &[], staging.path())?;
    let to = reports_dir.join(name);
    publish(staging.path(), &to)?;
    println!("{}", to.join(INDEX).display());
    Ok(ExitCode::SUCCESS)
}

/// The run directory `run` names: itself when it holds a run's records, else
/// `<runs>/<run>`.
fn find_run(runs_dir: &Path, run: &Path) -> anyhow::Result<PathBuf> {
    let is_run = |dir: &Path| dir.join("last-run.json").is_file();
    if is_run(run) {
        return Ok(run.to_owned());
    }
    let under_runs = runs_dir.join(run);
    if is_run(&under_runs) {
        return Ok(under_runs);
    }
    bail!(
        "no run at {} or {} (no last-run.json there): run the spec with `limoe run SPEC` \
         first, or name a directory under {}",
        run.display(),
        under_runs.display(),
        runs_dir.display()
    )
}

fn ensure_dir(dir: &Path) -> anyhow::Result<&Path> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}
