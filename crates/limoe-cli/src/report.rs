//! `limoe report RUN`, and publishing the analyze stage's report after `limoe run`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use limoe_analysis::RunDirs;
use limoe_analysis::claims::{Recipe, Settings};
use limoe_analysis::report::{
    ClaimInputs, INDEX, TrialReport, publish, write_run_report, write_sweep_report,
};
use limoe_analysis::routing::top_share_by_step;
use limoe_core::logs::{Modality, ROUTING};
use limoe_core::runner::{Plan, RunReport};
use limoe_core::spec::Spec;
use limoe_core::sweep::{SweepRecord, TRIALS_DIR, TrialState};
use limoe_core::{Registry, load_spec};

use crate::claim_pictures::patch_routing_pictures;
use crate::load::{find_run, load};

/// Copies the report the plan's `analyze` stage wrote to `<reports>/<experiment>/` (a
/// sweep trial's to `<reports>/<experiment>/trials/<id>/`) and says where it is; does
/// nothing for a pipeline without an analyze stage.
pub fn publish_analysis(
    plan: &Plan,
    reports_dir: &Path,
    experiment: &str,
    trial: Option<&str>,
) -> anyhow::Result<()> {
    let Some(analyze) = plan.stages.iter().find(|s| s.kind == "analyze") else {
        return Ok(());
    };
    let to = match trial {
        Some(id) => trial_report_dir(reports_dir, experiment, id),
        None => reports_dir.join(experiment),
    };
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
    if SweepRecord::path(&record_dir).is_file() {
        let mut record = SweepRecord::read(&record_dir)?;
        record.refresh();
        // The analysis settings are the sweep's, so any trial that has run has them.
        let ran = (record.trials.iter())
            .find_map(|t| RunReport::read(&t.record_dir).ok())
            .with_context(|| {
                format!(
                    "no trial of the sweep in {} has run yet",
                    record_dir.display()
                )
            })?;
        let loaded = match load(registry, &ran.spec_file, &[]) {
            Ok(loaded) => loaded,
            Err(code) => return Ok(code),
        };
        let index = sweep_report(registry, &record, &loaded.spec, reports_dir)?;
        println!("{}", index.display());
        return Ok(ExitCode::SUCCESS);
    }
    let dirs = RunDirs::from_record(&record_dir)?;
    let loaded = match load(registry, &dirs.spec_file, &[]) {
        Ok(loaded) => loaded,
        Err(code) => return Ok(code),
    };
    let name = &loaded.spec.name;
    let staging = staging_dir(reports_dir)?;
    write_run_report(name, &dirs, &loaded.spec.analysis, &[], staging.path())?;
    let to = reports_dir.join(name);
    publish(staging.path(), &to)?;
    println!("{}", to.join(INDEX).display());
    Ok(ExitCode::SUCCESS)
}

/// The sweep's comparison report at `<reports>/<experiment>/` and each finished trial's
/// report at `trials/<id>/` below it (drawn from the trial's logs, linking back).
pub fn sweep_report(
    registry: &Registry,
    record: &SweepRecord,
    spec: &Spec,
    reports_dir: &Path,
) -> anyhow::Result<PathBuf> {
    let analysis = &spec.analysis;
    let experiment = &record.experiment;
    let mut finished_dirs = Vec::new();
    let mut trials = Vec::with_capacity(record.trials.len());
    for trial in &record.trials {
        let outputs: Vec<PathBuf> = trial.stages.iter().map(|s| s.dir.clone()).collect();
        let finished = matches!(trial.state, TrialState::Done | TrialState::Cached);
        let dirs = RunReport::read(&trial.record_dir)
            .and_then(|ran| RunDirs::from_outputs(ran.spec_file, &outputs));
        let (summary, recipe, text_top_share_curve) = match dirs {
            Ok(dirs) if finished => {
                let links = [("sweep".to_owned(), "../../index.html".to_owned())];
                let to = trial_report_dir(reports_dir, experiment, &trial.id);
                let staging = staging_dir(reports_dir)?;
                let name = format!("{experiment}: {}", trial.id);
                let summary = write_run_report(&name, &dirs, analysis, &links, staging.path())
                    .with_context(|| format!("the report of trial {}", trial.id))?;
                publish(staging.path(), &to)?;
                let (recipe, curve) = trial_routing(registry, &dirs)
                    .with_context(|| format!("the routing of trial {}", trial.id))?;
                finished_dirs.push((trial.id.clone(), dirs));
                (Some(summary), Some(recipe), curve)
            }
            _ => (None, None, Vec::new()),
        };
        let (setting, seed) = split_seed(&trial.id);
        trials.push(TrialReport {
            recipe,
            text_top_share_curve,
            href: summary
                .is_some()
                .then(|| format!("{TRIALS_DIR}/{}/{INDEX}", trial.id)),
            id: trial.id.clone(),
            setting,
            seed,
            state: trial.state.word().to_owned(),
            summary,
        });
    }
    strip_common_axis(&mut trials);
    let staging = staging_dir(reports_dir)?;
    let mut claims = ClaimInputs {
        held_out: spec.eval.benchmarks.keys().cloned().collect(),
        ..ClaimInputs::default()
    };
    let first_limoe = Settings::new(&trials, &claims.held_out)
        .limoe_trials()
        .find_map(|t| finished_dirs.iter().find(|(id, _)| *id == t.id));
    if let Some((id, dirs)) = first_limoe {
        claims.patch_routing =
            patch_routing_pictures(registry, record, id, dirs, staging.path())
                .with_context(|| format!("the per-patch routing pictures of trial {id}"))?;
    }
    write_sweep_report(experiment, &trials, &claims, analysis, staging.path())?;
    let to = reports_dir.join(experiment);
    publish(staging.path(), &to)?;
    Ok(to.join(INDEX))
}

/// What a finished trial trained (from its resolved spec) and its top text share at every
/// validation step.
fn trial_routing(registry: &Registry, dirs: &RunDirs) -> anyhow::Result<(Recipe, Vec<(i64, f64)>)> {
    let loaded = load_spec(&dirs.spec_file, &[], registry)
        .map_err(|errors| anyhow::anyhow!("{errors}"))
        .with_context(|| format!("cannot read the spec {}", dirs.spec_file.display()))?;
    let routing = limoe_analysis::read_log(&dirs.train, &ROUTING)?;
    let curve = top_share_by_step(&routing, "val", Modality::Text)?;
    Ok((Recipe::of(&loaded.spec.model), curve))
}

/// A trial id's setting (the id without its `seed=` part; `all` when nothing else) and seed.
fn split_seed(id: &str) -> (String, Option<u64>) {
    let mut seed = None;
    let parts: Vec<&str> = id
        .split(',')
        .filter(|part| match part.strip_prefix("seed=") {
            Some(n) => {
                seed = n.parse().ok();
                seed.is_none()
            }
            None => true,
        })
        .collect();
    let setting = if parts.is_empty() {
        "all".to_owned()
    } else {
        parts.join(",")
    };
    (setting, seed)
}

/// `setting=none` -> `none` when every setting is a value of the same single axis.
fn strip_common_axis(trials: &mut [TrialReport]) {
    let axis = |setting: &str| {
        let (axis, _) = setting.split_once('=')?;
        (!setting.contains(',')).then(|| axis.to_owned())
    };
    let Some(first) = trials.first().and_then(|t| axis(&t.setting)) else {
        return;
    };
    if trials
        .iter()
        .all(|t| axis(&t.setting).as_deref() == Some(first.as_str()))
    {
        for t in trials {
            t.setting = t.setting[first.len() + 1..].to_owned();
        }
    }
}

/// A temporary folder inside `reports_dir` (same file system as the published report).
fn staging_dir(reports_dir: &Path) -> anyhow::Result<tempfile::TempDir> {
    std::fs::create_dir_all(reports_dir)
        .with_context(|| format!("cannot create {}", reports_dir.display()))?;
    tempfile::Builder::new()
        .prefix(".report-")
        .tempdir_in(reports_dir)
        .with_context(|| format!("cannot create a folder in {}", reports_dir.display()))
}

/// Where a sweep trial's report is published.
pub fn trial_report_dir(reports_dir: &Path, experiment: &str, trial: &str) -> PathBuf {
    reports_dir.join(experiment).join(TRIALS_DIR).join(trial)
}
