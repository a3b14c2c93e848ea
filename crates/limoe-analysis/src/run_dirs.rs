//! Finding a run's stage outputs: the train and eval directories a report reads.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use limoe_core::kinds::{EVAL, TRAIN};
use limoe_core::runner::{MANIFEST, Manifest, RunReport};

/// The outputs of one run that its report reads.
#[derive(Clone, Debug, PartialEq)]
pub struct RunDirs {
    /// The resolved spec (YAML) the run ran, as its record names it.
    pub spec_file: PathBuf,
    /// The train stage's output (metrics, routing, periodic eval logs, `plan.json`).
    pub train: PathBuf,
    /// The eval stage's output (eval, routing, assignments logs, summary), when it ran.
    pub eval: Option<PathBuf>,
}

impl RunDirs {
    /// The outputs named by the `last-run.json` in `record_dir` (`runs/<experiment>` or a
    /// sweep trial's `runs/<experiment>/trials/<id>`), found by their stages' kinds.
    pub fn from_record(record_dir: &Path) -> anyhow::Result<RunDirs> {
        let record = RunReport::read(record_dir).with_context(|| {
            format!(
                "{} is not a finished run's directory; run the spec with `limoe run` first",
                record_dir.display()
            )
        })?;
        let dirs: Vec<PathBuf> = record.stages.into_iter().map(|(_, dir, _)| dir).collect();
        RunDirs::from_outputs(record.spec_file, &dirs)
            .with_context(|| format!("in the run recorded in {}", record_dir.display()))
    }

    /// The outputs among `dirs` that a stage of kind `train` and `eval` completed.
    pub fn from_outputs(spec_file: PathBuf, dirs: &[PathBuf]) -> anyhow::Result<RunDirs> {
        let find = RunDirs::by_kind(dirs);
        let Some(train) = find(TRAIN) else {
            bail!(
                "no complete `train` stage output among {} (the analyze stage needs one in \
                 its `needs`)",
                dirs.len()
            );
        };
        Ok(RunDirs {
            spec_file,
            train,
            eval: find(EVAL),
        })
    }

    /// A lookup of the complete output of a stage kind among `dirs` (the last one wins).
    fn by_kind(dirs: &[PathBuf]) -> impl Fn(&str) -> Option<PathBuf> + '_ {
        move |kind| {
            dirs.iter()
                .rev()
                .find(|dir| manifest_kind(dir).as_deref() == Some(kind))
                .cloned()
        }
    }
}

/// The stage kind recorded in a complete output's manifest.
fn manifest_kind(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(MANIFEST)).ok()?;
    let manifest: Manifest = serde_json::from_str(&text).ok()?;
    Manifest::read_complete(dir, &manifest.key).map(|m| m.kind)
}
