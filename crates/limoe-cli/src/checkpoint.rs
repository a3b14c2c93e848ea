//! Choosing a checkpoint of a run, a train output or a checkpoint directory (with the
//! run's spec where it can be known), and `limoe checkpoint consolidate`: one checkpoint as
//! a single safetensors file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use limoe_analysis::RunDirs;
use limoe_core::Registry;
use limoe_core::kinds::TRAIN;
use limoe_core::runner::{MANIFEST, Manifest};
use limoe_core::spec::Spec;
use limoe_train::checkpoint::{self, Checkpoint, STATE_FILE};
use limoe_train::trainer::CHECKPOINTS;

use crate::load::{find_run, load};

/// Metadata key of the resolved spec (YAML) the run trained with, when it is known.
const SPEC_KEY: &str = "limoe.spec";

/// Which checkpoint to take: the options of every command that reads a trained model.
#[derive(clap::Args)]
pub(crate) struct ModelArgs {
    /// The run (`runs/tiny`, or an experiment name under --runs-dir), a train stage's
    /// output, or one checkpoint directory (`.../checkpoints/step-00000300`).
    run: PathBuf,
    /// The checkpoint of this step (default: the newest).
    #[arg(long, value_name = "STEP", conflicts_with = "best")]
    step: Option<u64>,
    /// The best checkpoint by the run's `train.best` metric.
    #[arg(long)]
    best: bool,
}

/// Which checkpoint of a run to take.
enum Pick {
    /// The newest.
    Newest,
    /// The one of this step.
    Step(u64),
    /// The best by the run's `train.best` metric.
    Best,
}

impl ModelArgs {
    /// The newest checkpoint of `run`.
    pub(crate) fn newest(run: std::path::PathBuf) -> ModelArgs {
        ModelArgs {
            run,
            step: None,
            best: false,
        }
    }

    /// The checkpoint these options name.
    pub(crate) fn chosen(&self, registry: &Registry, runs_dir: &Path) -> anyhow::Result<Chosen> {
        let pick = match (self.step, self.best) {
            (Some(step), _) => Pick::Step(step),
            (None, true) => Pick::Best,
            (None, false) => Pick::Newest,
        };
        match Source::find(registry, runs_dir, &self.run)? {
            Source::Checkpoint(checkpoint) => match pick {
                Pick::Newest => Ok(checkpoint),
                Pick::Step(_) | Pick::Best => bail!(
                    "{} is one checkpoint; --step and --best choose among a run's, so name the \
                     run (or its train output) instead",
                    self.run.display()
                ),
            },
            Source::Checkpoints { dir, spec } => choose(&dir, &pick, spec),
        }
    }
}

/// `limoe checkpoint consolidate RUN -o FILE`.
pub fn consolidate(
    registry: &Registry,
    runs_dir: &Path,
    model: &ModelArgs,
    output: &Path,
) -> anyhow::Result<ExitCode> {
    let chosen = model.chosen(registry, runs_dir)?;
    let metadata = match chosen.spec.as_ref().and_then(|s| s.file.as_ref()) {
        Some(file) => BTreeMap::from([(
            SPEC_KEY.to_owned(),
            std::fs::read_to_string(file)
                .with_context(|| format!("cannot read the run's spec {}", file.display()))?,
        )]),
        None => BTreeMap::new(),
    };
    let tensors = checkpoint::consolidate(&chosen.checkpoint, output, metadata)?;
    println!(
        "{}: {tensors} tensors of step {} (from {})",
        output.display(),
        chosen.checkpoint.step,
        chosen.checkpoint.path.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// A checkpoint, and the spec of the run it belongs to when that is known.
pub(crate) struct Chosen {
    /// The checkpoint.
    pub(crate) checkpoint: Checkpoint,
    /// The spec of its run.
    pub(crate) spec: Option<RunSpec>,
}

/// What the user named: one checkpoint, or a directory of them with the run's spec.
enum Source {
    Checkpoint(Chosen),
    Checkpoints { dir: PathBuf, spec: Option<RunSpec> },
}

/// The spec of a run: from its record, or as much of it as its train output's manifest
/// keeps (the seed, `model` and `train`, which build the model and name the best metric).
pub(crate) struct RunSpec {
    /// The spec.
    pub(crate) spec: Spec,
    /// The resolved spec file of the run's record, when it came from one.
    file: Option<PathBuf>,
}

impl Source {
    /// `run` as a checkpoint directory, a train stage's output, or a run (its train output).
    fn find(registry: &Registry, runs_dir: &Path, run: &Path) -> anyhow::Result<Source> {
        if run.join(STATE_FILE).is_file() {
            let parent = run.parent().unwrap_or(Path::new("."));
            let checkpoint = checkpoint::list(parent)?
                .into_iter()
                .find(|c| c.path == run)
                .with_context(|| {
                    format!(
                        "{} has a {STATE_FILE} but is not a complete checkpoint (a \
                         step-<N> directory with both tensor files)",
                        run.display()
                    )
                })?;
            return Ok(Source::Checkpoint(Chosen {
                checkpoint,
                spec: parent.parent().and_then(recorded_spec),
            }));
        }
        if run.join(CHECKPOINTS).is_dir() {
            return Ok(Source::Checkpoints {
                dir: run.join(CHECKPOINTS),
                spec: recorded_spec(run),
            });
        }
        let dirs = RunDirs::from_record(&find_run(runs_dir, run)?)?;
        let loaded = load(registry, &dirs.spec_file, &[]).map_err(|_| {
            anyhow::anyhow!(
                "the spec {} of the run does not load (its errors are above)",
                dirs.spec_file.display()
            )
        })?;
        Ok(Source::Checkpoints {
            dir: dirs.train.join(CHECKPOINTS),
            spec: Some(RunSpec {
                spec: loaded.spec,
                file: Some(dirs.spec_file),
            }),
        })
    }
}

/// The spec a complete train output's manifest records in the values its key read (see
/// crates/limoe-core/src/runner/mod.rs, `stage_config`); `None` for any other directory.
fn recorded_spec(train: &Path) -> Option<RunSpec> {
    let text = std::fs::read_to_string(train.join(MANIFEST)).ok()?;
    let manifest: Manifest = serde_json::from_str(&text).ok()?;
    let manifest = Manifest::read_complete(train, &manifest.key).filter(|m| m.kind == TRAIN)?;
    let reads = manifest.config.get("reads")?;
    let spec = serde_json::json!({
        "name": manifest.experiment,
        "seed": reads.get("seed")?,
        "model": reads.get("model")?,
        "train": reads.get("train")?,
    });
    Some(RunSpec {
        spec: serde_json::from_value(spec).ok()?,
        file: None,
    })
}

/// The checkpoint under `dir` that `pick` asks for.
fn choose(dir: &Path, pick: &Pick, spec: Option<RunSpec>) -> anyhow::Result<Chosen> {
    let saved = checkpoint::list(dir)?;
    if saved.is_empty() {
        bail!(
            "no complete checkpoint in {}: train the run first (`limoe run SPEC`)",
            dir.display()
        );
    }
    let checkpoint = match pick {
        Pick::Newest => saved.last().cloned(),
        Pick::Step(step) => {
            let found = saved.iter().find(|c| c.step == *step).cloned();
            if found.is_none() {
                let steps: Vec<String> = saved.iter().map(|c| c.step.to_string()).collect();
                bail!(
                    "no checkpoint of step {step} in {}; it holds steps {}",
                    dir.display(),
                    steps.join(", ")
                );
            }
            found
        }
        Pick::Best => {
            let Some(spec) = &spec else {
                bail!(
                    "--best needs the run's spec, whose train.best names the metric: name the \
                     run (`runs/<experiment>`) instead of {}",
                    dir.display()
                );
            };
            checkpoint::best(dir, &spec.spec.train.best)?
        }
    };
    let checkpoint = checkpoint.with_context(|| {
        format!(
            "no checkpoint in {} records the metric that picks the best one",
            dir.display()
        )
    })?;
    Ok(Chosen { checkpoint, spec })
}
