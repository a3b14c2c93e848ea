//! `limoe tensorboard RUN`: the `tensorboard` command line that shows a run's training, or
//! every trial of a sweep under its id, while it trains and after.

use std::path::{Path, PathBuf};

use anyhow::bail;
use limoe_core::kinds::TRAIN;
use limoe_core::runner::partial_of;
use limoe_core::shell::quote;
use limoe_core::sweep::SweepRecord;
use limoe_train::logs::tensorboard_dir;

/// The command line for `run` (an experiment directory, or an experiment name under
/// `runs_dir`).
///
/// A plain run's directory is the logdir: TensorBoard finds every train output's events in
/// it, the one still training (`<stage>-<key>.partial/`) as well. A sweep's trials share that
/// directory, so each is named by its id in a `--logdir_spec`, with both the final and the
/// in-progress place of its train output: TensorBoard follows whichever exists.
pub fn command_line(runs_dir: &Path, run: &Path) -> anyhow::Result<String> {
    let dir = experiment_dir(runs_dir, run)?;
    if !SweepRecord::path(&dir).is_file() {
        return Ok(format!(
            "tensorboard --logdir {}",
            quote(&dir.display().to_string())
        ));
    }
    let sweep = SweepRecord::read(&dir)?;
    let mut entries = Vec::new();
    for trial in &sweep.trials {
        let name = run_name(&trial.id);
        for stage in trial.stages.iter().filter(|s| s.kind == TRAIN) {
            for place in [partial_of(&stage.dir), stage.dir.clone()] {
                entries.push(format!("{name}:{}", tensorboard_dir(&place).display()));
            }
        }
    }
    if entries.is_empty() {
        bail!(
            "the sweep in {} has no trial with a train stage",
            dir.display()
        );
    }
    Ok(format!(
        "tensorboard --logdir_spec {}",
        quote(&entries.join(","))
    ))
}

/// The experiment directory `run` names: itself, or `<runs_dir>/<run>`. A run still in its
/// first training has no record yet, so any existing directory will do.
fn experiment_dir(runs_dir: &Path, run: &Path) -> anyhow::Result<PathBuf> {
    for dir in [run.to_owned(), runs_dir.join(run)] {
        if dir.is_dir() {
            return Ok(dir);
        }
    }
    bail!(
        "no run at {} or {}: start it with `limoe run SPEC` (or `limoe sweep SPEC`), or name a \
         directory under {}",
        run.display(),
        runs_dir.join(run).display(),
        runs_dir.display()
    )
}

/// A trial id as a `--logdir_spec` run name, which may hold neither the `,` between entries
/// nor the `:` before a path: `setting=none,seed=1` becomes `setting=none seed=1`.
fn run_name(id: &str) -> String {
    id.replace([',', ':'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trial_ids_become_run_names_tensorboard_can_parse() {
        assert_eq!(run_name("setting=none,seed=1"), "setting=none seed=1");
        assert_eq!(run_name("data.root=/a:b"), "data.root=/a b");
    }

    #[test]
    fn a_plain_run_is_its_directory_quoted_for_the_shell() {
        let runs = tempfile::tempdir().unwrap();
        std::fs::create_dir(runs.path().join("it's")).unwrap();
        let line = command_line(runs.path(), Path::new("it's")).unwrap();
        let expected = format!(r"tensorboard --logdir '{}/it'\''s'", runs.path().display());
        assert_eq!(line, expected);
    }

    #[test]
    fn a_missing_run_names_both_places_looked_at() {
        let runs = tempfile::tempdir().unwrap();
        let error = command_line(runs.path(), Path::new("nope"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("no run at nope or"), "{error}");
        assert!(
            error.contains(&runs.path().join("nope").display().to_string()),
            "{error}"
        );
    }
}
