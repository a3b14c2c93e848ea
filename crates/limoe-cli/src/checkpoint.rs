//! `limoe checkpoint consolidate`: one checkpoint of a run as a single safetensors file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use limoe_analysis::RunDirs;
use limoe_core::Registry;
use limoe_train::checkpoint::{self, BestBy, Checkpoint, STATE_FILE};
use limoe_train::trainer::CHECKPOINTS;

use crate::load::{find_run, load};

/// Metadata key of the resolved spec (YAML) the run trained with, when it is known.
const SPEC_KEY: &str = "limoe.spec";

/// Which checkpoint of a run to take.
pub enum Pick {
    /// The newest.
    Newest,
    /// The one of this step.
    Step(u64),
    /// The best by the run's `train.best` metric.
    Best,
}

/// `limoe checkpoint consolidate RUN -o FILE`.
pub fn consolidate(
    registry: &Registry,
    runs_dir: &Path,
    run: &Path,
    pick: &Pick,
    output: &Path,
) -> anyhow::Result<ExitCode> {
    let chosen = match Source::find(registry, runs_dir, run)? {
        Source::Checkpoint(checkpoint) => match pick {
            Pick::Newest => checkpoint,
            Pick::Step(_) | Pick::Best => bail!(
                "{} is one checkpoint; --step and --best choose among a run's, so name the run \
                 (or its train output) instead",
                run.display()
            ),
        },
        Source::Checkpoints { dir, spec } => choose(&dir, pick, spec.as_ref())?,
    };
    let metadata = match &chosen.spec_file {
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
struct Chosen {
    checkpoint: Checkpoint,
    spec_file: Option<PathBuf>,
}

/// What the user named: one checkpoint, or a directory of them with the run's spec.
enum Source {
    Checkpoint(Chosen),
    Checkpoints { dir: PathBuf, spec: Option<RunSpec> },
}

/// The spec of a run: its file, and the metric that picks its best checkpoint.
struct RunSpec {
    file: PathBuf,
    best: BestBy,
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
                spec_file: None,
            }));
        }
        if run.join(CHECKPOINTS).is_dir() {
            return Ok(Source::Checkpoints {
                dir: run.join(CHECKPOINTS),
                spec: None,
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
                file: dirs.spec_file,
                best: loaded.spec.train.best,
            }),
        })
    }
}

/// The checkpoint under `dir` that `pick` asks for.
fn choose(dir: &Path, pick: &Pick, spec: Option<&RunSpec>) -> anyhow::Result<Chosen> {
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
            let Some(spec) = spec else {
                bail!(
                    "--best needs the run's spec, whose train.best names the metric: name the \
                     run (`runs/<experiment>`) instead of {}",
                    dir.display()
                );
            };
            checkpoint::best(dir, &spec.best)?
        }
    };
    let checkpoint = checkpoint.with_context(|| {
        format!(
            "no checkpoint in {} records the metric that picks the best one",
            dir.display()
        )
    })?;
    Ok(Chosen {
        checkpoint,
        spec_file: spec.map(|s| s.file.clone()),
    })
}
