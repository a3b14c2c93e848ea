//! Loading a sweep: the base spec, then every trial validated as a spec of its own.

use std::fmt;
use std::path::{Path, PathBuf};

use super::expand::{Trial, expand};
use crate::load::{LoadedSpec, load_spec};
use crate::spec::{KeyPath, Origin, SpecErrors, did_you_mean};
use crate::stage::Registry;

/// A sweep whose trials all passed validation.
#[derive(Clone, Debug)]
pub struct Sweep {
    /// The spec file.
    pub file: PathBuf,
    /// The `--set` arguments given for the whole sweep.
    pub sets: Vec<String>,
    /// The spec as written (with its `sweep` section).
    pub base: LoadedSpec,
    /// Every trial, in expansion order.
    pub trials: Vec<LoadedTrial>,
}

/// One trial resolved into a spec of its own.
#[derive(Clone, Debug)]
pub struct LoadedTrial {
    /// Its id and overrides.
    pub trial: Trial,
    /// The base spec with the overrides applied, an empty `sweep` and the same `name`.
    pub loaded: LoadedSpec,
}

/// Why a sweep (or one trial of it) cannot be loaded.
#[derive(Debug)]
pub enum SweepError {
    /// The spec itself is invalid.
    Spec(SpecErrors),
    /// The spec has no `sweep` section.
    NotASweep(PathBuf),
    /// Some trials are invalid: (trial id, its errors), in trial order.
    Trials {
        /// The spec file.
        file: PathBuf,
        /// How many trials the sweep has.
        total: usize,
        /// The invalid trials.
        invalid: Vec<(String, SpecErrors)>,
    },
    /// `--trial ID` names no trial of the sweep.
    UnknownTrial {
        /// The spec file.
        file: PathBuf,
        /// The id asked for.
        id: String,
        /// Every trial id.
        ids: Vec<String>,
    },
}

/// The `--set` arguments that turn the base spec into `trial`: the sweep's own `sets`, an
/// emptied `sweep`, then the trial's overrides.
pub fn trial_sets(sets: &[String], trial: &Trial) -> Vec<String> {
    let mut all = sets.to_vec();
    all.push("sweep={}".into());
    all.extend(trial.overrides.iter().map(|o| o.as_set()));
    all
}

/// Loads `file` with `sets` and validates every trial of its sweep (all errors at once).
pub fn load_sweep(file: &Path, sets: &[String], registry: &Registry) -> Result<Sweep, SweepError> {
    let (base, trials) = expand_file(file, sets, registry)?;
    let total = trials.len();
    let mut loaded = Vec::new();
    let mut invalid = Vec::new();
    for trial in trials {
        match load_one(file, sets, &trial, registry) {
            Ok(spec) => loaded.push(LoadedTrial {
                trial,
                loaded: spec,
            }),
            Err(errors) => invalid.push((trial.id, errors)),
        }
    }
    if !invalid.is_empty() {
        return Err(SweepError::Trials {
            file: file.to_path_buf(),
            total,
            invalid,
        });
    }
    Ok(Sweep {
        file: file.to_path_buf(),
        sets: sets.to_vec(),
        base,
        trials: loaded,
    })
}

/// Loads only the trial `id` of the sweep in `file` (what `limoe run --trial` runs).
pub fn load_trial(
    file: &Path,
    sets: &[String],
    id: &str,
    registry: &Registry,
) -> Result<LoadedTrial, SweepError> {
    let (_, trials) = expand_file(file, sets, registry)?;
    let Some(trial) = trials.iter().find(|t| t.id == id).cloned() else {
        return Err(SweepError::UnknownTrial {
            file: file.to_path_buf(),
            id: id.to_owned(),
            ids: trials.into_iter().map(|t| t.id).collect(),
        });
    };
    match load_one(file, sets, &trial, registry) {
        Ok(loaded) => Ok(LoadedTrial { trial, loaded }),
        Err(errors) => Err(SweepError::Trials {
            file: file.to_path_buf(),
            total: 1,
            invalid: vec![(trial.id, errors)],
        }),
    }
}

/// The validated base spec and its trials; an error when it has no `sweep`.
fn expand_file(
    file: &Path,
    sets: &[String],
    registry: &Registry,
) -> Result<(LoadedSpec, Vec<Trial>), SweepError> {
    let base = load_spec(file, sets, registry).map_err(SweepError::Spec)?;
    let trials = expand(&base.spec.sweep);
    if trials.is_empty() {
        return Err(SweepError::NotASweep(file.to_path_buf()));
    }
    Ok((base, trials))
}

/// Loads one trial; an error at (or under) a swept path, or caused by a swept value, points
/// at where the sweep writes that value.
fn load_one(
    file: &Path,
    sets: &[String],
    trial: &Trial,
    registry: &Registry,
) -> Result<LoadedSpec, SpecErrors> {
    load_spec(file, &trial_sets(sets, trial), registry).map_err(|mut errors| {
        for d in &mut errors.diagnostics {
            let cause = trial.overrides.iter().rev().find(|o| {
                matches!(&d.origin, Origin::Override(arg) if *arg == o.as_set())
                    || o.path
                        .parse::<KeyPath>()
                        .is_ok_and(|p| p.is_prefix_of(&d.path))
            });
            if let Some(o) = cause {
                d.origin = match &o.value.origin {
                    origin @ Origin::File { .. } => origin.clone(),
                    _ => Origin::Override(o.as_set()),
                };
            }
        }
        SpecErrors::new(&errors.file, &errors.source, errors.diagnostics)
    })
}

impl fmt::Display for SweepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SweepError::Spec(errors) => write!(f, "{errors}"),
            SweepError::NotASweep(file) => write!(
                f,
                "{}: the spec has no `sweep` section, so it is a single run; run it with \
                 `limoe run {}`, or add `sweep:` with cases, grid, zip, random or seeds",
                file.display(),
                file.display()
            ),
            SweepError::Trials {
                file,
                total,
                invalid,
            } => {
                let mut count = 0;
                for (id, errors) in invalid {
                    count += errors.diagnostics.len();
                    let text = errors.to_string();
                    // Every line but the closing count, with the trial named on each error.
                    let lines: Vec<&str> = text.lines().collect();
                    for line in &lines[..lines.len().saturating_sub(1)] {
                        match line.strip_prefix("error: ") {
                            Some(rest) => writeln!(f, "error: trial {id}: {rest}")?,
                            None => writeln!(f, "{line}")?,
                        }
                    }
                }
                write!(
                    f,
                    "{}: {count} error{} in {} of {total} trial{}; nothing was run",
                    file.display(),
                    if count == 1 { "" } else { "s" },
                    invalid.len(),
                    if *total == 1 { "" } else { "s" },
                )
            }
            SweepError::UnknownTrial { file, id, ids } => {
                write!(f, "{}: no trial `{id}` in the sweep; ", file.display())?;
                match did_you_mean(id, ids.iter().map(String::as_str)) {
                    Some(hint) => write!(f, "{hint}"),
                    None => write!(f, "the trials are: {}", ids.join(" ")),
                }
            }
        }
    }
}

impl std::error::Error for SweepError {}
