//! Finding a run's stage outputs: the train, eval and finetune directories a report reads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use limoe_core::kinds::{EVAL, FINETUNE, TRAIN};
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
    /// The finetune stages' outputs (each with a `summary.json` of its benchmark's top-1),
    /// by stage id: a run may transfer several ways (the whole network, the head alone).
    pub finetune: BTreeMap<String, PathBuf>,
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

    /// The outputs among `dirs` that a stage of kind `train`, `eval` and `finetune`
    /// completed (the last of each kind, every finetune stage by its id).
    pub fn from_outputs(spec_file: PathBuf, dirs: &[PathBuf]) -> anyhow::Result<RunDirs> {
        let complete: Vec<(&PathBuf, Manifest)> = (dirs.iter())
            .filter_map(|dir| Some((dir, complete_manifest(dir)?)))
            .collect();
        let last = |kind: &str| {
            (complete.iter().rev())
                .find(|(_, manifest)| manifest.kind == kind)
                .map(|(dir, _)| (*dir).clone())
        };
        let Some(train) = last(TRAIN) else {
            bail!(
                "no complete `train` stage output among {} (the analyze stage needs one in \
                 its `needs`)",
                dirs.len()
            );
        };
        let finetune = (complete.iter())
            .filter(|(_, manifest)| manifest.kind == FINETUNE)
            .map(|(dir, manifest)| (manifest.stage.clone(), (*dir).clone()))
            .collect();
        Ok(RunDirs {
            spec_file,
            train,
            eval: last(EVAL),
            finetune,
        })
    }
}

/// The manifest of a complete output (its stage's id and kind).
fn complete_manifest(dir: &Path) -> Option<Manifest> {
    let text = std::fs::read_to_string(dir.join(MANIFEST)).ok()?;
    let manifest: Manifest = serde_json::from_str(&text).ok()?;
    Manifest::read_complete(dir, &manifest.key)
}
