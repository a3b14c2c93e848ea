//! Runs a spec's stages in dependency order, skipping stages whose output for the same
//! cache key is complete (like `dvc repro`). Outputs live in
//! `<runs>/<experiment>/<stage-id>-<key>/`; a stage writes into `<stage-id>-<key>.partial/`,
//! which is renamed into place only after its `manifest.json` is written, so a failed or
//! killed stage never leaves an output that looks complete. In a job of several ranks,
//! rank 0 alone writes the store ([`Runner::with_comm`]).

mod manifest;

use std::collections::BTreeMap;
use std::fs::File;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use anyhow::{Context, bail};
use limoe_dist::{Communicator, Solo, agree};
use serde::{Deserialize, Serialize};

pub use manifest::{COMPLETE, FileEntry, InputRef, MANIFEST, Manifest, Verified};

use crate::files::{sha256_hex, write_atomic};
use crate::load::LoadedSpec;
use crate::pipeline::execution_order;
use crate::spec::{PLACEMENT_KEYS, Spec, StageSpec, did_you_mean};
use crate::stage::{Artifact, Progress, Registry, Stage, StageContext};

/// Whether a planned stage would run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// A complete output for this key exists.
    Cached,
    /// No complete output exists.
    Pending,
    /// Output exists but `--force` asks to redo it.
    Forced,
}

/// One stage of a plan.
#[derive(Clone, Debug, Serialize)]
pub struct PlannedStage {
    /// Stage id.
    pub id: String,
    /// Stage kind.
    pub kind: String,
    /// Upstream ids.
    pub needs: Vec<String>,
    /// Cache key (16 hex digits).
    pub key: String,
    /// What the key hashes besides the inputs.
    pub config: serde_json::Value,
    /// Output directory.
    pub dir: PathBuf,
    /// Cached or not.
    pub status: Status,
}

/// File name of the record of the last run (a [`RunReport`]) in a record directory.
pub const LAST_RUN: &str = "last-run.json";
/// Directory of a record directory holding the resolved specs its runs ran, each named by
/// the hash of its text: a later or concurrent run of another spec of the same name adds a
/// file and never replaces the spec that an earlier run's outputs came from.
pub const SPECS_DIR: &str = "specs";

/// What `limoe run` would do.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    /// `<runs>/<experiment>`.
    pub experiment_dir: PathBuf,
    /// Where [`Runner::execute`] saves the resolved spec (under [`SPECS_DIR`]) and
    /// `last-run.json`: the experiment
    /// directory, or a trial's directory (see [`Plan::recording_in`]).
    pub record_dir: PathBuf,
    /// Stages in execution order.
    pub stages: Vec<PlannedStage>,
}

impl Plan {
    /// The same plan saving its records in `dir` instead.
    pub fn recording_in(mut self, dir: impl Into<PathBuf>) -> Plan {
        self.record_dir = dir.into();
        self
    }

    /// Only the stages for which `keep` is true (their upstream stages must be kept too).
    pub fn only(mut self, keep: impl Fn(&PlannedStage) -> bool) -> Plan {
        self.stages.retain(keep);
        self
    }

    /// True when every stage has a complete output and none is forced.
    pub fn all_cached(&self) -> bool {
        self.stages.iter().all(|s| s.status == Status::Cached)
    }
}

/// How one stage of a run ended.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Outcome {
    /// Skipped: complete output found.
    Cached,
    /// Ran to completion.
    Ran {
        /// Wall-clock seconds.
        seconds: f64,
    },
    /// Failed; later stages were not run.
    Failed {
        /// The error, with its causes.
        error: String,
    },
}

/// The record of one `limoe run`, saved as `last-run.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunReport {
    /// Experiment name.
    pub experiment: String,
    /// The resolved spec this run ran, saved under [`SPECS_DIR`].
    pub spec_file: PathBuf,
    /// (stage id, output dir, outcome) in execution order, up to the first failure.
    pub stages: Vec<(String, PathBuf, Outcome)>,
}

impl RunReport {
    /// Reads `<record_dir>/last-run.json`.
    pub fn read(record_dir: &Path) -> anyhow::Result<RunReport> {
        let path = record_dir.join(LAST_RUN);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{} is damaged", path.display()))
    }

    /// True when no stage failed.
    pub fn succeeded(&self) -> bool {
        !self
            .stages
            .iter()
            .any(|(_, _, o)| matches!(o, Outcome::Failed { .. }))
    }
}

/// Plans and executes specs against a runs directory.
pub struct Runner<'a> {
    registry: &'a Registry,
    runs_root: PathBuf,
    progress: Progress,
    comm: &'a dyn Communicator,
}

impl<'a> Runner<'a> {
    /// A runner writing under `runs_root` (usually `runs/`).
    pub fn new(registry: &'a Registry, runs_root: impl Into<PathBuf>, progress: Progress) -> Self {
        Runner {
            registry,
            runs_root: runs_root.into(),
            progress,
            comm: &SOLO,
        }
    }

    /// The same runner as one rank of a multi-process job: rank 0 alone writes the run
    /// store, and stages that are not [`Stage::distributed`] run on rank 0 while the other
    /// ranks wait for their output.
    pub fn with_comm(mut self, comm: &'a dyn Communicator) -> Self {
        self.comm = comm;
        self
    }

    /// Lets every stage get what its cache key covers but a plan must not fetch
    /// ([`Stage::prepare`]); a run calls it before [`Runner::plan`].
    /// On several ranks, rank 0 alone fetches while the others wait.
    pub fn prepare(&self, loaded: &LoadedSpec) -> anyhow::Result<()> {
        let fetch = || -> anyhow::Result<()> {
            for stage in &loaded.spec.stages {
                self.kind_of(stage)?
                    .prepare(&loaded.spec)
                    .with_context(|| format!("stage `{}` cannot get its inputs", stage.id))?;
            }
            Ok(())
        };
        let fetched = match self.comm.rank() {
            0 => fetch(),
            _ => Ok(()),
        };
        agree(self.comm, fetched)
    }

    /// Orders the stages, computes their keys and finds what is cached. `force` names
    /// stages to rerun regardless.
    pub fn plan(&self, loaded: &LoadedSpec, force: &[String]) -> anyhow::Result<Plan> {
        let spec = &loaded.spec;
        let ids: Vec<&str> = spec.stages.iter().map(|s| s.id.as_str()).collect();
        for id in force {
            if !ids.contains(&id.as_str()) {
                let hint = did_you_mean(id, ids.iter().copied())
                    .unwrap_or_else(|| format!("stages: {}", ids.join(", ")));
                bail!(
                    "--force {id}: no such stage in {}; {hint}",
                    loaded.file.display()
                );
            }
        }
        let experiment_dir = self.runs_root.join(&spec.name);
        let spec_json = serde_json::to_value(spec)?;
        let mut keys: BTreeMap<&str, String> = BTreeMap::new();
        let mut stages = Vec::new();
        for i in execution_order(&spec.stages) {
            let stage = &spec.stages[i];
            let config = self.stage_config(spec, &spec_json, stage)?;
            let input_keys: Vec<(&str, &str)> = stage
                .needs
                .iter()
                .map(|n| (n.as_str(), keys.get(n.as_str()).map_or("", String::as_str)))
                .collect();
            let key = cache_key(&config, &input_keys);
            let dir = experiment_dir.join(format!("{}-{key}", stage.id));
            let status = match Manifest::read_complete(&dir, &key) {
                Some(_) if force.contains(&stage.id) => Status::Forced,
                Some(_) => Status::Cached,
                None => Status::Pending,
            };
            keys.insert(&stage.id, key.clone());
            stages.push(PlannedStage {
                id: stage.id.clone(),
                kind: stage.uses.clone(),
                needs: stage.needs.clone(),
                key,
                config,
                dir,
                status,
            });
        }
        Ok(Plan {
            record_dir: experiment_dir.clone(),
            experiment_dir,
            stages,
        })
    }

    /// The registered kind that runs `stage`.
    fn kind_of(&self, stage: &StageSpec) -> anyhow::Result<&Arc<dyn Stage>> {
        self.registry
            .get(&stage.uses)
            .with_context(|| format!("stage kind `{}` is not registered", stage.uses))
    }

    /// What a stage's key covers: its kind, its `with`, the values of the resolved spec
    /// (`spec_json`) at the key paths it reads, and its fingerprint (e.g. hashes of files it
    /// reads).
    fn stage_config(
        &self,
        spec: &Spec,
        spec_json: &serde_json::Value,
        stage: &StageSpec,
    ) -> anyhow::Result<serde_json::Value> {
        let kind = self.kind_of(stage)?;
        let reads = kind
            .reads()
            .iter()
            .map(|&path| {
                if path == "seed" && kind.seed_draws_data() {
                    return Ok((path.to_owned(), spec.data_seed().into()));
                }
                let pointer = format!("/{}", path.replace('.', "/"));
                let mut value = spec_json.pointer(&pointer).cloned().with_context(|| {
                    format!(
                        "stage kind `{}` reads `{path}`, which no spec has",
                        stage.uses
                    )
                })?;
                drop_placement_keys(path, &mut value);
                Ok((path.to_owned(), value))
            })
            .collect::<anyhow::Result<serde_json::Map<_, _>>>()?;
        let fingerprint = kind
            .fingerprint(&stage.with, spec)
            .with_context(|| format!("stage `{}`: cannot compute its cache key", stage.id))?;
        Ok(serde_json::json!({
            "kind": stage.uses,
            "with": serde_json::to_value(&stage.with)?,
            "reads": reads,
            "fingerprint": fingerprint,
        }))
    }

    /// Runs the stages of `plan` that are not cached, stopping at the first failure.
    /// Saves the resolved spec and `last-run.json` in the plan's record directory.
    /// On several ranks, every rank must execute the same plan (checked first); only rank 0
    /// writes the records.
    pub fn execute(&self, loaded: &LoadedSpec, plan: &Plan) -> anyhow::Result<RunReport> {
        self.agree_on_plan(plan)?;
        let root = self.comm.rank() == 0;
        let spec = &loaded.spec;
        let yaml = spec.to_yaml();
        let spec_file = (plan.record_dir.join(SPECS_DIR))
            .join(format!("{}.yaml", &sha256_hex(yaml.as_bytes())[..16]));
        if root {
            write_atomic(&spec_file, yaml.as_bytes())?;
        }
        let preflight = || -> anyhow::Result<()> {
            for stage in &spec.stages {
                let pending = plan
                    .stages
                    .iter()
                    .any(|p| p.id == stage.id && p.status != Status::Cached);
                if pending {
                    self.kind_of(stage)?.preflight(spec).with_context(|| {
                        format!("stage `{}` cannot run; nothing was run", stage.id)
                    })?;
                }
            }
            Ok(())
        };
        agree(self.comm, preflight())?;
        let mut artifacts: BTreeMap<String, Artifact> = BTreeMap::new();
        let mut report = RunReport {
            experiment: spec.name.clone(),
            spec_file: spec_file.clone(),
            stages: Vec::new(),
        };
        for planned in &plan.stages {
            let stage = spec
                .stages
                .iter()
                .find(|s| s.id == planned.id)
                .context("plan and spec disagree")?;
            let inputs: BTreeMap<String, Artifact> = stage
                .needs
                .iter()
                .filter_map(|n| artifacts.get(n).map(|a| (n.clone(), a.clone())))
                .collect();
            let outcome = match crate::interrupt::requested() {
                Some(signal) => Err(anyhow::anyhow!("not started: {signal} asked to stop")),
                None => self.run_stage(loaded, stage, planned, &inputs, &spec_file),
            };
            let outcome = match outcome {
                Ok(outcome) => outcome,
                Err(e) => Outcome::Failed {
                    error: format!("{e:#}"),
                },
            };
            match &outcome {
                Outcome::Cached => {
                    tracing::info!("{}: cached ({})", planned.id, planned.dir.display())
                }
                Outcome::Ran { seconds } => {
                    tracing::info!(
                        "{}: done in {seconds:.1}s ({})",
                        planned.id,
                        planned.dir.display()
                    )
                }
                Outcome::Failed { error } => tracing::error!("{}: failed: {error}", planned.id),
            }
            let failed = matches!(outcome, Outcome::Failed { .. });
            report
                .stages
                .push((planned.id.clone(), planned.dir.clone(), outcome));
            if failed {
                break;
            }
            artifacts.insert(
                planned.id.clone(),
                Artifact {
                    id: planned.id.clone(),
                    kind: planned.kind.clone(),
                    key: planned.key.clone(),
                    dir: planned.dir.clone(),
                },
            );
        }
        if root {
            write_atomic(
                &plan.record_dir.join(LAST_RUN),
                serde_json::to_string_pretty(&report)?.as_bytes(),
            )?;
        }
        Ok(report)
    }

    /// Runs one stage: on every rank when its kind is distributed, else on rank 0 while
    /// the other ranks wait for its output.
    fn run_stage(
        &self,
        loaded: &LoadedSpec,
        stage: &StageSpec,
        planned: &PlannedStage,
        inputs: &BTreeMap<String, Artifact>,
        spec_file: &Path,
    ) -> anyhow::Result<Outcome> {
        let kind = self.kind_of(stage)?;
        let job = StageJob {
            loaded,
            stage,
            planned,
            inputs,
            spec_file,
            kind: kind.as_ref(),
        };
        if kind.distributed() || self.comm.size() == 1 {
            return self.run_on(&job, self.comm);
        }
        let clock = Instant::now();
        let result = match self.comm.rank() {
            0 => self.run_on(&job, &SOLO),
            _ => Ok(Outcome::Ran { seconds: 0.0 }),
        };
        Ok(match agree(self.comm, result)? {
            Outcome::Ran { .. } if self.comm.rank() != 0 => Outcome::Ran {
                seconds: clock.elapsed().as_secs_f64(),
            },
            outcome => outcome,
        })
    }

    /// Runs a stage on the ranks of `comm`, rank 0 alone claiming, recording and publishing
    /// the output directory.
    fn run_on(&self, job: &StageJob, comm: &dyn Communicator) -> anyhow::Result<Outcome> {
        let planned = job.planned;
        let claim = match comm.rank() {
            0 => claim(planned, job.kind.resumable()),
            _ => Ok(None),
        };
        let claim = agree(comm, claim)?;
        let mut cached = vec![u8::from(comm.rank() == 0 && claim.is_none())];
        comm.broadcast_bytes(&mut cached, 0);
        if cached == [1] {
            return Ok(Outcome::Cached);
        }
        let partial = partial_of(&planned.dir);
        let failure_file = partial.join("failure.json");

        tracing::info!("{}: running `{}`", planned.id, planned.kind);
        let started = SystemTime::now();
        let clock = Instant::now();
        let ctx = StageContext {
            spec: &job.loaded.spec,
            stage: job.stage,
            inputs: job.inputs,
            out_dir: &partial,
            spec_file: job.spec_file,
            progress: &self.progress,
            comm,
        };
        let span = tracing::info_span!("stage", id = %planned.id);
        let result = span.in_scope(|| {
            catch_unwind(AssertUnwindSafe(|| job.kind.run(&ctx))).unwrap_or_else(|panic| {
                let what = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "unknown panic".into());
                Err(anyhow::anyhow!("the stage panicked: {what}"))
            })
        });
        if let Err(e) = result {
            if comm.rank() == 0 {
                let record = serde_json::json!({
                    "stage": planned.id,
                    "error": format!("{e:#}"),
                    "started": timestamp(started),
                    "failed": timestamp(SystemTime::now()),
                });
                write_atomic(
                    &failure_file,
                    serde_json::to_string_pretty(&record)?.as_bytes(),
                )?;
            }
            let e = e.context(format!(
                "stage `{}` failed; what it wrote is in {}",
                planned.id,
                partial.display()
            ));
            if comm.size() > 1 {
                // The other ranks may be inside a collective this one will never join:
                // only ending the whole job frees them. When every rank stops together (a
                // signal, a non-finite loss), rank 0 gets a moment to say why first.
                eprintln!("error: rank {} of {}: {e:#}", comm.rank(), comm.size());
                if comm.rank() > 0 {
                    std::thread::sleep(ABORT_GRACE);
                }
                comm.abort(1);
            }
            return Err(e);
        }
        let seconds = clock.elapsed().as_secs_f64();
        agree(comm, Ok(()))?;
        if comm.rank() != 0 {
            return Ok(Outcome::Ran { seconds });
        }
        let manifest = Manifest {
            limoe_version: crate::VERSION.to_owned(),
            experiment: job.loaded.spec.name.clone(),
            stage: planned.id.clone(),
            kind: planned.kind.clone(),
            key: planned.key.clone(),
            config: planned.config.clone(),
            inputs: (job.inputs.values())
                .map(|a| InputRef {
                    id: a.id.clone(),
                    key: a.key.clone(),
                    dir: a.dir.clone(),
                })
                .collect(),
            started: timestamp(started),
            finished: timestamp(SystemTime::now()),
            seconds,
            status: COMPLETE.to_owned(),
            files: Manifest::collect_files(&partial)?,
        };
        manifest.write(&partial)?;
        replace_dir(&partial, &planned.dir)?;
        drop(claim);
        Ok(Outcome::Ran { seconds })
    }

    /// Checks that every rank planned the same stages with the same keys (the same spec,
    /// overrides, data and build), so that no rank trains something else.
    fn agree_on_plan(&self, plan: &Plan) -> anyhow::Result<()> {
        let size = self.comm.size();
        if size == 1 {
            return Ok(());
        }
        let listing: Vec<String> = (plan.stages.iter())
            .map(|s| format!("{}-{}", s.id, s.key))
            .collect();
        let digest = sha256_hex(listing.join(" ").as_bytes());
        let all = self.comm.all_gather_bytes(digest.as_bytes());
        let of = |rank: usize| &all[rank * digest.len()..(rank + 1) * digest.len()];
        let differing: Vec<String> = (1..size)
            .filter(|&rank| of(rank) != of(0))
            .map(|rank| rank.to_string())
            .collect();
        if !differing.is_empty() {
            bail!(
                "rank {} planned other stages or cache keys than rank 0 (this is rank {}, \
                 planning {}); every rank must run the same spec, overrides, data and build",
                differing.join(", rank "),
                self.comm.rank(),
                listing.join(" ")
            );
        }
        Ok(())
    }
}

/// One stage to run, with what it reads.
struct StageJob<'s> {
    loaded: &'s LoadedSpec,
    stage: &'s StageSpec,
    planned: &'s PlannedStage,
    inputs: &'s BTreeMap<String, Artifact>,
    spec_file: &'s Path,
    kind: &'s dyn Stage,
}

/// How long a failed rank other than 0 waits before ending the job, so that rank 0's own
/// message and failure record come first when all ranks failed at once.
const ABORT_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// The world of one process, for the stages only rank 0 runs.
static SOLO: Solo = Solo;

/// Where the stage whose output is `dir` writes while it runs (`<dir>.partial`, beside it):
/// what shows a stage in progress, such as a training run's live events.
pub fn partial_of(dir: &Path) -> PathBuf {
    let mut name = dir.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

/// Takes the stage's lock and prepares its partial directory (emptied unless the kind
/// resumes from it); `None` when a complete output exists and the stage is not forced.
fn claim(planned: &PlannedStage, resumable: bool) -> anyhow::Result<Option<File>> {
    let forced = planned.status == Status::Forced;
    if !forced && Manifest::read_complete(&planned.dir, &planned.key).is_some() {
        return Ok(None);
    }
    let partial = partial_of(&planned.dir);
    let parent = (partial.parent()).context("output directory has no parent")?;
    std::fs::create_dir_all(parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    let lock = lock(&parent.join(format!(".{}-{}.lock", planned.id, planned.key)))?;
    // Another process may have finished it while we waited for the lock.
    if !forced && Manifest::read_complete(&planned.dir, &planned.key).is_some() {
        return Ok(None);
    }
    if partial.exists() && !resumable {
        std::fs::remove_dir_all(&partial)
            .with_context(|| format!("cannot clear {}", partial.display()))?;
    }
    std::fs::create_dir_all(&partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
    let _ = std::fs::remove_file(partial.join("failure.json"));
    Ok(Some(lock))
}

/// Moves the finished `from` to `to`, replacing an earlier output there (when forced).
fn replace_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    if to.exists() {
        let mut old = to.as_os_str().to_owned();
        old.push(format!(".old-{}", std::process::id()));
        let old = PathBuf::from(old);
        std::fs::rename(to, &old).with_context(|| format!("cannot move {}", to.display()))?;
        std::fs::remove_dir_all(&old)
            .with_context(|| format!("cannot remove {}", old.display()))?;
    }
    std::fs::rename(from, to)
        .with_context(|| format!("cannot move {} to {}", from.display(), to.display()))
}

/// Holds an exclusive lock on `path` until dropped (so two runs never build one output).
fn lock(path: &Path) -> anyhow::Result<File> {
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    file.lock()
        .with_context(|| format!("cannot lock {}", path.display()))?;
    Ok(file)
}

/// The cache key: 16 hex digits of SHA-256 over the limoe version, the stage config and
/// the keys of its inputs.
pub fn cache_key(config: &serde_json::Value, inputs: &[(&str, &str)]) -> String {
    let material = serde_json::json!({
        "limoe": crate::VERSION,
        "config": config,
        "inputs": inputs,
    });
    sha256_hex(material.to_string().as_bytes())[..16].to_owned()
}

fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Removes from `value`, the spec's value at `path`, the [`PLACEMENT_KEYS`] inside it: how
/// work is placed on devices changes no result, so a run placed otherwise reuses (and
/// resumes) the same stages.
fn drop_placement_keys(path: &str, value: &mut serde_json::Value) {
    for key in PLACEMENT_KEYS {
        let Some(inner) = key.strip_prefix(path).and_then(|k| k.strip_prefix('.')) else {
            continue;
        };
        let (parent, last) = match inner.rsplit_once('.') {
            Some((parent, last)) => (format!("/{}", parent.replace('.', "/")), last),
            None => (String::new(), inner),
        };
        if let Some(serde_json::Value::Object(map)) = value.pointer_mut(&parent) {
            map.remove(last);
        }
    }
}
